"""Wall time until a run first reaches given meta-validation accuracies.

    python benchmarks/time_to_accuracy.py runs/anil-... runs/maml-... [--targets 0.9,0.95]

Reads each run's ``metrics.csv`` (written by ``run.py``); reports the outer step, the
outer-step seconds (``train_s``, validation excluded) and the wall seconds (``elapsed_s``)
at the first validation whose accuracy reaches each target, counted from the run's start
across ``--resume`` sessions. Runs made with
``--val-every 25`` resolve the time to 25 outer steps.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders written by run.py")
    p.add_argument("--targets", default="0.9,0.95", help="comma-separated accuracies")
    args = p.parse_args()
    try:
        targets = [float(t) for t in args.targets.split(",")]
    except ValueError:
        print(f"time_to_accuracy.py: error: --targets must be comma-separated numbers, got {args.targets!r}",
              file=sys.stderr)
        return 2
    for run in args.runs:
        metrics = run / "metrics.csv"
        if not metrics.is_file():
            print(f"time_to_accuracy.py: error: {metrics} does not exist: pass folders written by run.py",
                  file=sys.stderr)
            return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
