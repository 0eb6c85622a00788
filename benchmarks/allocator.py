#!/usr/bin/env python
"""What the allocator settings buy: the same short runs with glibc's defaults
(``BILEVEL_ANIL_MALLOC=system``), with the package's default (``mallopt`` at start-up,
:mod:`bilevel_anil.training.allocator`) and with the equivalent ``MALLOC_*_`` environment variables, back
to back on one machine.

Each case is a separate ``run.py`` process; the table gives its outer steps per second (from
``results.json``: outer steps only), and from the kernel's accounting of the whole process
(``wait4``): user and system CPU seconds, minor page faults and peak resident memory.

    python benchmarks/allocator.py --data-root ../shared/data [--only anil-5w] [--repeat 1]

Writes ``benchmarks/results/allocator.csv`` and prints a table.
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

REPO = Path(__file__).resolve().parents[1]
ENV_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736",
                "MALLOC_TOP_PAD_": "1073741824"}
MODES = {
    "glibc defaults": {"BILEVEL_ANIL_MALLOC": "system"},
    "mallopt (package default)": {},
    "MALLOC_* variables": ENV_SETTINGS,
}
CASES = {
    "anil-5w": ["--problem", "anil", "--iterations", "60"],
    "anil-20w": ["--preset", "anil-omniglot-20w1s", "--iterations", "30"],
    "maml-5w": ["--problem", "maml", "--iterations", "30"],
    "maml-20w": ["--preset", "maml-omniglot-20w1s", "--iterations", "4"],
    "imaml-5w": ["--problem", "imaml", "--iterations", "8"],
    "imaml-20w": ["--preset", "imaml-omniglot-20w1s", "--iterations", "2"],
    "anil-resnet18": ["--problem", "anil", "--arch", "resnet18", "--iterations", "6"],
}
SHORT = ["--val-tasks", "4", "--test-tasks", "4", "--no-progress", "--seed", "0"]


def run_case(args: list[str], mode_env: dict[str, str], data_root: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        iterations = args[args.index("--iterations") + 1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "BILEVEL_ANIL_MALLOC"}
        env.update(mode_env)
        proc = subprocess.Popen([sys.executable, "run.py", *args, *SHORT, "--val-every", iterations,
                                 "--data-root", data_root, "--out", str(out)], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{args} failed: {proc.stderr.read().decode()[-500:]}")
        report = json.loads((out / "results.json").read_text())
    return {"steps_per_s": report["steps_per_second"], "train_s": report["train_seconds"],
            "user_s": round(usage.ru_utime, 1), "system_s": round(usage.ru_stime, 1),
            "minor_faults_M": round(usage.ru_minflt / 1e6, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases: {', '.join(CASES)}")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--csv", default=str(REPO / "benchmarks" / "results" / "allocator.csv"))
    a = p.parse_args()
    rows = []
    for case in a.only.split(","):
        for _ in range(a.repeat):
            for mode, mode_env in MODES.items():
                row = {"case": case, "allocator": mode, **run_case(CASES[case], mode_env, a.data_root)}
                rows.append(row)
                print(" | ".join(str(v) for v in row.values()), flush=True)
    Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(a.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n| case | allocator | steps/s | user s | system s | minor faults (M) | peak RSS MiB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['allocator']} | {r['steps_per_s']} | {r['user_s']} | {r['system_s']} | "
              f"{r['minor_faults_M']} | {r['peak_rss_mib']} |")
    print(f"wrote {a.csv}")


if __name__ == "__main__":
    main()
