"""``--log tensorboard`` writes the same scalars as metrics.csv, also across --resume."""
import csv

import pytest

from bilevel_anil.training import metrics_log
from bilevel_anil.cli import main
from bilevel_anil.errors import UsageError

RUN = ["--problem", "maml", "--dataset", "sine", "--val-every", "4", "--val-tasks", "5", "--test-tasks", "5",
       "--no-progress", "--seed", "1"]


def csv_scalars(out):
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    return {(key, int(r["step"])): float(r[key]) for r in rows for key in metrics_log.METRICS[1:] if r[key] != ""}


def tensorboard_scalars(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / metrics_log.TENSORBOARD_DIR), size_guidance={"scalars": 0})
    events.Reload()
    return {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}


def test_tensorboard_gets_the_csv_scalars_also_after_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*RUN, "--iterations", "8", "--out", str(out), "--log", "tensorboard"]) == 0
    assert main([*RUN, "--iterations", "12", "--out", str(out), "--log", "tensorboard", "--resume"]) == 0
    from_csv, from_tensorboard = csv_scalars(out), tensorboard_scalars(out)
    assert {step for _, step in from_csv} == set(range(1, 13))
    assert from_tensorboard.keys() == from_csv.keys()
    for key, value in from_csv.items():
        assert from_tensorboard[key] == pytest.approx(value, rel=1e-6, abs=1e-6)  # float32 events


def test_resume_drops_events_written_after_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main([*RUN, "--iterations", "6", "--out", str(out), "--log", "tensorboard"]) == 0
    # as after a crash whose last.pt is from step 4: steps 5 and 6 were logged and are redone
    with metrics_log.MetricsLog(out, start_step=4, tensorboard=True) as log:
        log.write({"step": 5, "train_loss": 123.0, "train_score": "", "val_score": "", "val_ci95": "",
                   "elapsed_s": 0, "train_s": 0, "steps_per_s": 1})
    scalars = tensorboard_scalars(out)
    assert scalars[("train_loss", 5)] == 123.0 and ("train_loss", 6) not in scalars
    assert csv_scalars(out)[("train_loss", 5)] == 123.0 and ("train_loss", 6) not in csv_scalars(out)


def test_missing_tensorboard_is_one_line(capsys, monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UsageError, match="pip install tensorboard"):
        metrics_log.summary_writer_class()
    assert main([*RUN, "--iterations", "2", "--out", str(tmp_path / "r"), "--log", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--log tensorboard needs the tensorboard package" in err[0]
    assert not (tmp_path / "r").exists()


def test_unknown_logger_is_one_line(capsys):
    assert main([*RUN, "--log", "wandb"]) == 2
    assert "unknown --log 'wandb': choose one of csv, tensorboard" in capsys.readouterr().err
