"""Do two checkouts of the package give the same runs? Runs the same small anil, ianil (Omniglot),
imaml and reptile (sine) runs in each and compares ``metrics.csv`` row by row and
``results.json`` field by field, leaving out what depends on the clock, memory or paths.

    git worktree add /tmp/before <commit>
    python scripts/same_results.py --before /tmp/before --after . --data-root ../shared/data

Exit status 0 when every pair is identical. Used to check a refactoring (docs/design/index.md).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = {
    "anil": ["--problem", "anil", "--iterations", "6", "--val-every", "3", "--meta-batch", "4", "--val-tasks", "10",
             "--test-tasks", "20", "DATA"],
    "ianil": ["--problem", "ianil", "--ways", "3", "--iterations", "4", "--val-every", "2", "--meta-batch", "2",
              "--inner-steps", "5", "--val-tasks", "6", "--test-tasks", "10", "DATA"],
    "imaml": ["--problem", "imaml", "--dataset", "sine", "--iterations", "6", "--val-every", "3", "--val-tasks", "10",
              "--test-tasks", "20"],
    "reptile": ["--problem", "reptile", "--dataset", "sine", "--iterations", "6", "--val-every", "3", "--val-tasks",
                "10", "--test-tasks", "20"],
}
CLOCK = {"elapsed_s", "train_s", "steps_per_s"}
VARYING = ("second", "peak", "time", "out", "plot", "wall", "mib", "per_s", "path")


def run(tree: Path, name: str, data_root: str, out: Path) -> Path:
    args = [data_root if a == "DATA" else a for a in RUNS[name]]
    args = [x for a in args for x in (["--data-root", a] if a == data_root else [a])]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "run.py", *args, "--no-progress", "--out", str(out / name)], cwd=tree, env=env,
                   check=True, capture_output=True)
    return out / name


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not any(s in k for s in VARYING)}
    return [_strip(v) for v in value] if isinstance(value, list) else value


def compare(a: Path, b: Path) -> tuple[bool, list[str]]:
    def rows(p: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in CLOCK} for r in csv.DictReader(open(p / "metrics.csv"))]

    ra, rb = (_strip(json.loads((p / "results.json").read_text())) for p in (a, b))
    return rows(a) == rows(b), sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--data-root", required=True, help="the folder holding omniglot-py/")
    args = parser.parse_args()
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            a = run(args.before.resolve(), name, str(Path(args.data_root).resolve()), Path(tmp) / "before")
            b = run(args.after.resolve(), name, str(Path(args.data_root).resolve()), Path(tmp) / "after")
            rows_same, differing = compare(a, b)
            same &= rows_same and not differing
            print(f"{name}: metrics.csv {'identical' if rows_same else 'DIFFERS'}; results.json "
                  f"{'identical' if not differing else 'differs in ' + ', '.join(differing)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
