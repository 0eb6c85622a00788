"""benchmarks/gpu_check.sh, the script for the first GPU machine, in its CPU dry-run mode: each
of its steps runs and the summary names them; a bad argument is one line."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, "PY": sys.executable}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(tmp_path / "check")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = (tmp_path / "check" / "summary.txt").read_text()
    for name in ("tests", "peers", "run"):
        assert f"{name:<10} exit 0" in summary
    assert (tmp_path / "check" / "bench" / "peers.csv").is_file()
    assert (tmp_path / "check" / "run" / "results.json").is_file()


def test_gpu_check_refuses_unknown_arguments_and_a_missing_gpu(tmp_path):
    env = {**os.environ, "PY": sys.executable}
    bad = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--fast"], cwd=REPO, env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown argument --fast" in bad.stderr
    import torch
    if not torch.cuda.is_available():
        none = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--out", str(tmp_path / "x")], cwd=REPO, env=env,
                              capture_output=True, text=True)
        assert none.returncode == 2 and "no CUDA device; run with --dry-run" in none.stderr
