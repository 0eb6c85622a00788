"""Wall time until a run first reaches given meta-validation accuracies.

    python benchmarks/time_to_accuracy.py runs/anil-... runs/maml-... [--targets 0.9,0.95]

Reads each run's ``metrics.csv`` (written by ``run.py``); reports the outer step, the
outer-step seconds (``train_s``, validation excluded) and the wall seconds (``elapsed_s``)
at the first validation whose accuracy reaches each target. Runs made with
``--val-every 25`` resolve the time to 25 outer steps.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def first_reach(metrics: Path, target: float):
    with open(metrics) as fh:
        for row in csv.DictReader(fh):
            if row["val_score"] and float(row["val_score"]) >= target:
                return int(row["step"]), float(row["train_s"]), float(row["elapsed_s"])
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
