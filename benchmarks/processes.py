"""One process against torchrun with N processes: steps/s and the losses of the same seed.

    python benchmarks/processes.py --data-root ../shared/data [--problems anil,maml] [--iterations 40]

Runs ``run.py`` for each problem once as one process (with all CPU threads) and once under
``torchrun --nproc-per-node N`` (threads divided among the processes), on Omniglot 5-way
1-shot with the problem's defaults, and prints a table: outer steps per second (median of the
per-step times, validation excluded) and the largest relative difference between the two runs'
per-step training losses, at step 1 and the largest over the run (the same seed draws the
same tasks, so step 1 agrees to float rounding; Adam then normalises the rounding noise of
near-zero gradient entries, such as conv biases before BatchNorm, so later steps drift
apart slowly). Runs go to a temporary folder.
"""
from __future__ import annotations

import argparse
import csv
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(problem: str, processes: int, threads: int, out: Path, args: argparse.Namespace) -> list[dict]:
    flags = ["--problem", problem, "--data-root", args.data_root, "--iterations", str(args.iterations),
             "--val-every", str(args.iterations), "--val-tasks", "20", "--test-tasks", "20", "--no-progress",
             "--seed", "0", "--out", str(out), *args.extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if processes == 1:
        command = [sys.executable, "run.py", *flags]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                   "--master-port", str(free_port()), "run.py", *flags]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"processes.py: {' '.join(command[:6])}... failed:\n{done.stderr[-3000:]}")
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def steps_per_second(rows: list[dict]) -> float:
    times = [float(b["train_s"]) - float(a["train_s"]) for a, b in zip(rows, rows[1:])]
    return 1.0 / statistics.median(times[1:])  # the first steps warm up


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="data")
    p.add_argument("--problems", default="anil,maml")
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("extra", nargs="*", help="more run.py flags (after --)")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} CPU cores; 1 process with {cores} threads vs {args.processes} processes with "
          f"{max(1, cores // args.processes)} thread(s) each; {args.iterations} outer steps, seed 0")
    print("| problem | 1 process steps/s | %d processes steps/s | speed-up | relative loss difference: step 1 / "
          "largest over the run |" % args.processes)
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for problem in args.problems.split(","):
            one = run(problem, 1, cores, Path(tmp) / f"{problem}-1", args)
            many = run(problem, args.processes, max(1, cores // args.processes), Path(tmp) / f"{problem}-n", args)
            diffs = [abs(float(a["train_loss"]) - float(b["train_loss"])) / abs(float(a["train_loss"]))
                     for a, b in zip(one, many)]
            s1, sn = steps_per_second(one), steps_per_second(many)
            print(f"| {problem} | {s1:.2f} | {sn:.2f} | {sn / s1:.2f}x | {diffs[0]:.1e} / {max(diffs):.1e} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
