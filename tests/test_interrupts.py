"""Nothing is lost: Ctrl-C stops cleanly, SIGKILL at a random point resumes bit for bit, and
damaged, foreign or mismatched files give one line (sine runs: no data set needed)."""
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import bilevel_anil
from bilevel_anil.cli import main
from bilevel_anil.training.schema import read_run

REPO = Path(__file__).resolve().parents[1]
RUN = ["--problem", "maml", "--dataset", "sine", "--iterations", "300", "--val-every", "10", "--val-tasks", "10",
       "--test-tasks", "20", "--no-progress", "--seed", "3"]


def start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "run.py", *RUN, "--out", str(out), *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def wait_for_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.csv").exists() and len(rows(out)) >= n:
            return
        time.sleep(0.02)


def final_state(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=False)["model"]


def losses(out: Path) -> list[tuple[str, str]]:
    return [(r["step"], r["train_loss"]) for r in rows(out)]


def resume_equals(out: Path, uninterrupted: Path) -> None:
    """``--resume`` the run in ``out``: its metrics and final weights equal the uninterrupted run's."""
    resumed = start(out, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert losses(out) == losses(uninterrupted)
    for name, value in final_state(uninterrupted).items():
        assert torch.equal(final_state(out)[name], value), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    proc = start(out)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return out


def test_ctrl_c_writes_last_pt_and_says_how_to_resume(uninterrupted, tmp_path):
    out = tmp_path / "run"
    proc = start(out)
    wait_for_rows(out, 37, proc)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert code == 130, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--resume --out" in err and str(out) in err
    step = int(torch.load(out / "last.pt", weights_only=False)["step"])
    assert f"interrupted after step {step}" in err
    assert int(rows(out)[-1]["step"]) == step  # metrics flushed up to the saved step
    resume_equals(out, uninterrupted)


def test_sigkill_at_random_points_then_resume_is_bit_exact(uninterrupted, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(0)
    for _ in range(3):
        resume = (out / "last.pt").exists()
        proc = start(out, *(["--resume"] if resume else []))
        time.sleep(rng.uniform(3.0, 6.0))  # start-up takes a few seconds; kills land in steps and writes
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    last = start(out, *(["--resume"] if (out / "last.pt").exists() else []))
    assert last.wait(timeout=300) == 0, last.stderr.read()
    assert losses(out) == losses(uninterrupted)
    for name, value in final_state(uninterrupted).items():
        assert torch.equal(final_state(out)[name], value), name


@pytest.mark.parametrize("content, fragment", [
    (b"", "cannot be read"),
    (b"PK\x03\x04 truncated", "cannot be read"),
    (None, "is not a bilevel_anil checkpoint"),
])
def test_load_of_damaged_or_foreign_files_raises_value_error(tmp_path, content, fragment):
    path = tmp_path / "model.pt"
    if content is None:
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)  # someone else's checkpoint
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=fragment) as info:
        bilevel_anil.load(path)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint_on_resume_is_one_line(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    data = (uninterrupted / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])
    code = main([*RUN, "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot be read" in err


@pytest.mark.parametrize("flags, named", [
    (["--problem", "fomaml"], "--problem"),
    (["--inner-lr", "0.01"], "--inner-lr"),
    (["--meta-batch", "5"], "--meta-batch"),
])
def test_resume_with_contradicting_flags_names_the_flag(uninterrupted, tmp_path, capsys, flags, named):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((uninterrupted / "last.pt").read_bytes())
    args = list(RUN)
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    code = main([*args, "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"was trained with {named} " in err


def test_resume_of_a_finished_run_only_tests(uninterrupted, tmp_path, capsys):
    """--resume of a checkpoint that reached --iterations takes no step, keeps the metrics and
    writes the meta-test of its best checkpoint (how a stopped test is redone)."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "best.pt", "metrics.csv"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    before = rows(out)
    assert main([*RUN, "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "no outer steps this session" in printed
    assert rows(out) == before
    redone, original = (json.loads((d / "results.json").read_text()) for d in (out, uninterrupted))
    assert redone["steps_done"] == 0 and redone["best_step"] == original["best_step"]
    assert redone["test"] == original["test"]  # the same checkpoint on the same seeded test tasks


def test_sigkill_just_after_last_pt_loses_no_row(uninterrupted, tmp_path):
    """The row of a validation step is on disk before its last.pt: killed right after last.pt is
    renamed into place, the resumed run's metrics equal the uninterrupted run's row for row."""
    from bilevel_anil.training.loop import KILL_AFTER_CHECKPOINT

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", KILL_AFTER_CHECKPOINT: "20"}
    proc = subprocess.run([sys.executable, "run.py", *RUN, "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert int(torch.load(out / "last.pt", weights_only=True)["step"]) == 20
    assert [r["step"] for r in rows(out)][-1] == "20"  # the row of the checkpoint's step survived
    resume_equals(out, uninterrupted)


def test_a_second_run_on_a_locked_folder_is_one_line_naming_the_holder(tmp_path, capsys):
    from bilevel_anil.training.run_lock import RunFolderLock

    out = tmp_path / "run"
    with RunFolderLock(out):
        code = main([*RUN, "--iterations", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"in use by another run (process {os.getpid()}" in err and str(out) in err
    assert not (out / "metrics.csv").exists()


def test_two_runs_started_together_on_one_folder(tmp_path):
    """Both pass the 'already holds a run' check; one runs, the other stops with the lock's line."""
    out = tmp_path / "run"
    procs = [start(out, "--iterations", "40") for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(err for code, err in results if code == 2)
    assert len(err.strip().splitlines()) == 1 and ("in use by another run" in err or "already holds a run" in err), err
    assert [r["step"] for r in rows(out)] == [str(i) for i in range(1, 41)]


def test_a_lock_file_left_by_a_dead_run_is_not_stale(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999\n")  # a run that was SIGKILLed left its lock file
    assert main([*RUN, "--iterations", "2", "--val-every", "1", "--out", str(out)]) == 0
    capsys.readouterr()


def _reshaped(uninterrupted) -> dict:
    state = torch.load(uninterrupted / "last.pt", weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name].reshape(-1)[:3].clone()
    return state


FOREIGN = {
    "pretrain-body": (lambda u: {"format": 1, "kind": "bilevel_anil-body", "arch": {"name": "conv4"},
                                 "body": {"w": torch.zeros(2)}}, "is a pretrain-body file"),
    "format-only": (lambda u: {"format": 1}, "is not a complete run checkpoint"),
    "no-optimizer": (lambda u: {k: v for k, v in torch.load(u / "last.pt", weights_only=True).items()
                                if k != "optimizer"}, "is not a complete run checkpoint"),
    "reshaped": (_reshaped, "size mismatch for"),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_resume_of_a_foreign_or_reshaped_checkpoint_is_one_line(uninterrupted, tmp_path, capsys, kind):
    make, fragment = FOREIGN[kind]
    out = tmp_path / "run"
    out.mkdir()
    torch.save(make(uninterrupted), out / "last.pt")
    code = main([*RUN, "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err


@pytest.mark.parametrize("kind", [k for k in FOREIGN if k != "no-optimizer"])
def test_load_of_a_foreign_or_reshaped_checkpoint_raises_value_error(uninterrupted, tmp_path, kind):
    make, fragment = FOREIGN[kind]
    torch.save(make(uninterrupted), tmp_path / "best.pt")
    with pytest.raises(ValueError, match=fragment) as info:
        bilevel_anil.load(tmp_path / "best.pt")
    assert "\n" not in str(info.value)


def test_resume_with_a_metrics_file_that_is_not_utf8(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "best.pt"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    (out / "metrics.csv").write_bytes(b"step,train_loss\n\xff\xfe\x00 not utf-8\n")
    code = main([*RUN, "--iterations", "320", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not the CSV this package writes" in err, err


def test_resume_that_would_validate_on_another_set_is_refused(uninterrupted, tmp_path, capsys):
    """best.pt is chosen by comparing validation scores: a resumed run that still trains keeps
    the validation protocol; a finished run may be re-tested with other test settings."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "best.pt", "metrics.csv"):
        (out / name).write_bytes((uninterrupted / name).read_bytes())
    args = list(RUN)
    args[args.index("--val-tasks") + 1] = "20"
    code = main([*args, "--iterations", "320", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "validated with --val-tasks 10" in err, err
    assert main([*RUN, "--test-inner-steps", "3", "--out", str(out), "--resume"]) == 0  # finished: re-test only
    capsys.readouterr()


def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes(tmp_path, capsys, monkeypatch):
    """ENOSPC while writing a checkpoint (simulated: torch.save writes part of it, then fails as
    on a full disk): one line naming the file and the intact step, no temporary file left, and
    --resume after space is freed continues to the same result as a run that never failed."""
    import errno

    from bilevel_anil.training import checkpoint

    args = [*RUN, "--iterations", "6", "--val-every", "2"]
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) == 0
    real_save, calls = torch.save, []

    def full_disk(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 3:  # best.pt and last.pt of step 2 fit; the next write does not
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    code = main([*args, "--out", str(out)])
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "no space left on the device writing" in err and "(last.pt, step 2) is intact" in err
    assert not list(out.glob("*.tmp"))
    assert read_run(out / "last.pt").step == 2
    assert main([*args, "--out", str(out), "--resume"]) == 0
    capsys.readouterr()
    assert losses(out) == losses(whole)


def test_a_real_full_tmpfs(tmp_path, capsys):
    """The same on a real 80 KiB tmpfs (root only): a checkpoint write runs out of space."""
    from helpers import tmpfs

    with tmpfs(tmp_path / "full", "size=80k") as mount:
        code = main(["--problem", "maml", "--dataset", "sine", "--iterations", "4", "--val-every", "2",
                     "--val-tasks", "2", "--test-tasks", "2", "--no-progress", "--out", str(mount / "run")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert "no space left on the device" in err or "cannot write" in err, err
        assert not list((mount / "run").glob("*.tmp"))


def test_resume_names_a_switch_by_its_own_flag(uninterrupted, tmp_path, capsys):
    """A switch whose flag is not its field's name (rotate: --no-rotate) is named as the user
    types it (the message used to say --rotate, a flag that does not exist)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((uninterrupted / "last.pt").read_bytes())
    code = main([*RUN, "--no-rotate", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "was trained with --no-rotate " in err and "drop --no-rotate" in err, err
