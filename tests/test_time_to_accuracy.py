"""benchmarks/time_to_accuracy.py counts seconds from the run's start, across --resume sessions
(each session's metrics rows start their clocks at 0 again)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import time_to_accuracy  # noqa: E402

HEADER = "step,train_loss,train_score,val_score,val_ci95,elapsed_s,train_s,steps_per_s\n"


def write_metrics(path: Path, rows) -> Path:
    path.write_text(HEADER + "".join(f"{step},1.0,0.5,{val},,{wall},{train},1.0\n"
                                     for step, val, wall, train in rows))
    return path


def test_one_session(tmp_path):
    metrics = write_metrics(tmp_path / "metrics.csv", [(1, "", 2.0, 1.0), (2, 0.85, 5.0, 2.0), (3, 0.91, 8.0, 3.0)])
    assert time_to_accuracy.first_reach(metrics, 0.9) == (3, 3.0, 8.0)
    assert time_to_accuracy.first_reach(metrics, 0.95) is None


def test_a_resumed_run_adds_the_earlier_sessions_seconds(tmp_path):
    # session 1 ends at step 2 (100 s of outer steps, 120 s wall); session 2 restarts both clocks
    metrics = write_metrics(tmp_path / "metrics.csv", [
        (1, "", 60.0, 50.0), (2, 0.8, 120.0, 100.0),
        (3, "", 5.0, 4.0), (4, 0.9, 30.0, 20.0),
        (5, "", 4.0, 3.0), (6, 0.95, 9.0, 6.0)])  # a third session
    assert time_to_accuracy.first_reach(metrics, 0.9) == (4, 120.0, 150.0)
    assert time_to_accuracy.first_reach(metrics, 0.95) == (6, 126.0, 159.0)


def test_wall_curves_of_runs_and_pipelines_and_the_figure(tmp_path):
    import json

    run = tmp_path / "run"
    run.mkdir()
    write_metrics(run / "metrics.csv", [(1, "", 60.0, 50.0), (2, 0.8, 120.0, 100.0), (3, "", 5.0, 4.0),
                                        (4, 0.9, 30.0, 20.0)])
    assert time_to_accuracy.wall_curve(run / "metrics.csv") == [(120.0, 0.8), (150.0, 0.9)]
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    (pipe / "pipeline.json").write_text(json.dumps({
        "config": {"pretrain_share": 0.5, "problem": "protonet"},
        "curves": {"pretraining": [[20.0, 0.6], [40.0, 0.7]], "+ meta-training": [[70.0, 0.8], [95.0, 0.9]]}}))
    label, points = time_to_accuracy.read_curve(pipe)
    assert label == "pipeline (50% pretraining, protonet)"
    assert points == [(20.0, 0.6), (40.0, 0.7), (70.0, 0.8), (95.0, 0.9)]
    figure = time_to_accuracy.plot([time_to_accuracy.read_curve(run), (label, points)], tmp_path / "t.png", "t")
    assert figure.stat().st_size > 1000
