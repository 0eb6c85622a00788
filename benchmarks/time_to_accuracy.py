"""Wall time until a run first reaches given meta-validation accuracies, and one figure of them.

    python benchmarks/time_to_accuracy.py runs/anil-... runs/maml-... runs/pipeline-... \
        [--targets 0.9,0.95] [--plot time_to_accuracy.png]

Reads each run's ``metrics.csv`` (written by ``run.py``); reports the outer step, the
outer-step seconds (``train_s``, validation excluded) and the wall seconds (``elapsed_s``)
at the first validation whose accuracy reaches each target, counted from the run's start
across ``--resume`` sessions. Runs made with
``--val-every 25`` resolve the time to 25 outer steps. A folder of ``run.py pipeline``
(``pipeline.json``) is read as one curve from its start: the pretraining epochs' validations,
then the meta-training ones, in wall seconds including the pretraining. ``--plot`` draws every
folder's validation accuracy against wall seconds in one figure.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def first_reach(metrics: Path, target: float):
    """(step, outer-step seconds, wall seconds) of the first validation at or above
    ``target``, counted from the run's start: a ``--resume`` starts its clocks at 0 again,
    so each session's seconds are added to those of the sessions before it."""
    before_train = before_wall = last_train = last_wall = 0.0
    with open(metrics) as fh:
        for row in csv.DictReader(fh):
            train_s, wall_s = float(row["train_s"]), float(row["elapsed_s"])
            if train_s < last_train:  # the first row of a resumed session
                before_train, before_wall = before_train + last_train, before_wall + last_wall
            last_train, last_wall = train_s, wall_s
            if row["val_score"] and float(row["val_score"]) >= target:
                return int(row["step"]), before_train + train_s, before_wall + wall_s
    return None


def wall_curve(metrics: Path) -> list[tuple[float, float]]:
    """(wall seconds from the run's start, validation score) of each validation of a run."""
    points, before_wall, last_train, last_wall = [], 0.0, 0.0, 0.0
    with open(metrics) as fh:
        for row in csv.DictReader(fh):
            train_s, wall_s = float(row["train_s"]), float(row["elapsed_s"])
            if train_s < last_train:
                before_wall += last_wall
            last_train, last_wall = train_s, wall_s
            if row["val_score"]:
                points.append((before_wall + wall_s, float(row["val_score"])))
    return points


def pipeline_curve(report: dict) -> list[tuple[float, float]]:
    """A pipeline's validations in wall seconds from its start, stage after stage."""
    return sorted((float(t), float(v)) for points in report["curves"].values() for t, v in points)


def read_curve(run: Path) -> tuple[str, list[tuple[float, float]]]:
    """A folder's label and its validation curve (run.py or run.py pipeline)."""
    if (run / "pipeline.json").is_file():
        report = json.loads((run / "pipeline.json").read_text())
        cfg = report["config"]
        rotations = " with rotations" if cfg.get("pretrain_rotations") else ""
        budget = f", {cfg['time_budget']:g} s" if cfg.get("time_budget") else ""
        head = f" ({cfg['head_init']} head)" if cfg.get("head_init", "prototypes") != "prototypes" else ""
        label = f"pipeline ({100 * cfg['pretrain_share']:g}% pretraining{rotations}, {cfg['problem']}{head}{budget})"
        return label, pipeline_curve(report)
    config = json.loads((run / "results.json").read_text())["config"] if (run / "results.json").is_file() else {}
    label = config.get("problem", run.name) + (f", head {config['head_init']}" if config.get("head_init") else "")
    return label, wall_curve(run / "metrics.csv")


def plot(curves: list[tuple[str, list]], path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (label, points) in enumerate(curves):
        if points:  # past ten curves the colours repeat: dashed lines tell them apart
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=2.5, lw=1.2, ls="-" if i < 10 else "--", label=label)
    ax.set_xlabel("wall seconds from the start (pretraining and validation included)")
    ax.set_ylabel("meta-validation accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders written by run.py")
    p.add_argument("--targets", default="0.9,0.95", help="comma-separated accuracies")
    p.add_argument("--plot", type=Path, help="write one figure of every run's validation accuracy against wall time")
    p.add_argument("--title", default="time to accuracy", help="the figure's title")
    args = p.parse_args()
    try:
        targets = [float(t) for t in args.targets.split(",")]
    except ValueError:
        print(f"time_to_accuracy.py: error: --targets must be comma-separated numbers, got {args.targets!r}",
              file=sys.stderr)
        return 2
    curves = []
    for run in args.runs:
        if (run / "pipeline.json").is_file():
            label, points = read_curve(run)
            curves.append((label, points))
            for t in targets:
                hit = next((s for s, v in points if v >= t), None)
                print(f"{label} {100 * t:.0f}%: " + (f"{hit:.0f} s wall ({run})" if hit is not None
                                                     else f"not reached in this run ({run})"))
            continue
        metrics = run / "metrics.csv"
        if not metrics.is_file():
            print(f"time_to_accuracy.py: error: {metrics} does not exist: pass folders written by run.py or "
                  "run.py pipeline", file=sys.stderr)
            return 2
        curves.append(read_curve(run))
        config = json.loads((run / "results.json").read_text())["config"] if (run / "results.json").is_file() else {}
        for t in targets:
            hit = first_reach(metrics, t)
            name = config.get("problem", run.name)
            if hit is None:
                print(f"{name:<7} {100 * t:.0f}%: not reached in this run ({run})")
            else:
                step, train_s, elapsed_s = hit
                print(f"{name:<7} {100 * t:.0f}%: step {step}, {train_s:.0f} s of outer steps, {elapsed_s:.0f} s wall "
                      f"with validation ({run})")
    if args.plot:
        print(f"figure: {plot(curves, args.plot, args.title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
