"""Task chunks and data-parallel processes take the same outer step as one process over all tasks.

Chunked and parallel steps only change the order of float sums. Tolerances (relative L2 error
of the first meta-gradient and of the parameters after three outer steps): ≤ 1e-9 in float64
for maml, anil, imaml and reptile; ≤ 1e-6 in float32 for maml and anil. In float32 imaml's CG
amplifies rounding to about 5e-6, and Reptile's inner Adam turns the rounding noise of the
zero gradient of a conv bias before BatchNorm (|g| ~ 1e-9, comparable to Adam's eps) into
steps of size lr: float32 cannot compare those two, float64 can.
Two processes run on gloo, started by the tests as torchrun would (RANK, WORLD_SIZE, ...).
"""
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bilevel_anil.cli import main
from bilevel_anil.training.schema import read_run

from helpers import relative_error
from parallel_case import SETTINGS, outer_steps

REPO = Path(__file__).resolve().parents[1]
TOL = {torch.float64: 1e-9, torch.float32: 1e-6}
CASES = [(name, torch.float64) for name in sorted(SETTINGS)] + [("anil", torch.float32), ("maml", torch.float32)]


@pytest.fixture(scope="module")
def one_process():
    return {(name, dtype): outer_steps(name, dtype=dtype) for name, dtype in CASES}


@pytest.mark.parametrize("chunk", [1, 2])
@pytest.mark.parametrize("name, dtype", CASES)
def test_chunked_step_equals_the_whole_meta_batch(name, dtype, chunk, one_process):
    grads, params = outer_steps(name, task_chunk=chunk, dtype=dtype)
    want_grads, want_params = one_process[name, dtype]
    assert relative_error(grads, want_grads) <= TOL[dtype]
    assert relative_error(params, want_params) <= TOL[dtype]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(rank: int, world: int, port: int, **extra: str) -> dict:
    return {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def start_processes(command: list[str], world: int = 2, **extra: str) -> list[subprocess.Popen]:
    port = free_port()
    return [subprocess.Popen(command, cwd=REPO, env=process_env(rank, world, port, **extra), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for rank in range(world)]


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> None:
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-2000:]


@pytest.mark.parametrize("name, chunk, dtype", [("maml", 0, torch.float32), ("imaml", 0, torch.float64),
                                               ("reptile", 1, torch.float64)])
def test_two_processes_take_the_one_process_step(name, chunk, dtype, one_process, tmp_path):
    out = tmp_path / "rank0.pt"
    finish(start_processes([sys.executable, "tests/distributed_worker.py", name, str(chunk),
                            str(dtype).removeprefix("torch."), str(out)]))
    got = torch.load(out)
    want_grads, want_params = one_process[name, dtype]
    assert relative_error(got["grads"], want_grads) <= TOL[dtype]
    assert relative_error(got["params"], want_params) <= TOL[dtype]


SINE = ["run.py", "--problem", "maml", "--dataset", "sine", "--val-every", "4", "--val-tasks", "11",
        "--test-tasks", "21", "--no-progress", "--seed", "3", "--meta-batch", "24"]


def losses(out: Path) -> list[float]:
    with open(out / "metrics.csv") as fh:
        return [float(r["train_loss"]) for r in csv.DictReader(fh)]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(free_port()), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_torchrun_run_and_resume_equal_one_process(tmp_path):
    single, parallel = tmp_path / "one", tmp_path / "two"
    assert main([*SINE[1:], "--iterations", "12", "--out", str(single)]) == 0
    first = torchrun(*SINE, "--iterations", "8", "--out", str(parallel))
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("meta-test:") == 1  # rank 0 alone prints
    resumed = torchrun(*SINE, "--iterations", "12", "--out", str(parallel), "--resume", "--task-chunk", "4")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(losses(parallel)) == 12
    assert torch.allclose(torch.tensor(losses(parallel)), torch.tensor(losses(single)), rtol=1e-6, atol=0)
    a = read_run(single / "last.pt").model
    b = read_run(parallel / "last.pt").model
    assert relative_error(list(b.values()), list(a.values())) <= 1e-6


def test_a_dead_process_stops_the_other_with_one_line(tmp_path):
    out = tmp_path / "run"
    procs = start_processes([sys.executable, *SINE, "--iterations", "100000", "--val-every", "5", "--out", str(out)],
                            BILEVEL_ANIL_DIST_TIMEOUT="20")
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "last.pt").exists():
        time.sleep(0.1)
    assert (out / "last.pt").exists(), procs[0].stderr.read() if procs[0].poll() is not None else "no checkpoint"
    procs[1].send_signal(signal.SIGKILL)
    started = time.time()
    _, err = procs[0].communicate(timeout=90)
    assert procs[0].returncode == 1
    assert time.time() - started < 60
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "lost contact with the other processes of this run" in lines[0], err[-2000:]
    assert read_run(out / "last.pt").step % 5 == 0  # loadable, at a validation step
    procs[1].communicate()


@pytest.mark.parametrize("args, fragment", [
    (["--meta-batch", "32", "--task-chunk", "5"],
     "--task-chunk 5 does not divide the 32 tasks of each process (--meta-batch 32): choose one of 1, 2, 4, 8, 16, 32"),
    (["--task-chunk", "0"], "--task-chunk must be a positive integer, got 0"),
])
def test_bad_chunk_is_one_line(capsys, args, fragment):
    assert main(["--dataset", "sine", "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_fit_under_torchrun_stops_all_processes_when_one_callback_asks(tmp_path):
    """MetaLearner.fit joins torchrun's processes; a callback that stops rank 0 only (as a
    time- or file-based one may) stops every process at the same step, none left waiting."""
    script = tmp_path / "fit.py"
    script.write_text(f"""
import os, sys, torch
from torch import nn
sys.path.insert(0, {str(REPO / 'tests')!r})
from test_api import sine_task
from bilevel_anil import MetaLearner, function_tasks
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.01, meta_lr=0.01)
rank = int(os.environ["RANK"])
result = learner.fit(function_tasks(sine_task, seed=0), steps=20, meta_batch=4, val_every=10,
                     out=sys.argv[1], callbacks=[lambda info: rank == 0 and info.step == 2])
torch.save({{"steps": result.steps_done, "weights": [p.detach() for p in net.parameters()]}},
           sys.argv[1] + f"/rank{{rank}}.pt")
""")
    finish(start_processes([sys.executable, str(script), str(tmp_path / "run")]), timeout=120)
    ranks = [torch.load(tmp_path / "run" / f"rank{r}.pt") for r in (0, 1)]
    assert [r["steps"] for r in ranks] == [2, 2]
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["weights"], ranks[1]["weights"]))
