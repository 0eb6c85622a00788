"""MAML on the 1-64-64-1 sine-regression example: this package's MetaLearner against
learn2learn's MAML (clone/adapt per task, as its examples run it), side by side in one run,
same tasks, same network initialisation, same steps.

    python benchmarks/regression_vs_learn2learn.py [--steps 200] [--meta-batch 25]

Prints seconds per run, steps/s, the ratio, and the largest relative difference between the
two meta-gradients of the first step (float32)."""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bilevel_anil import MetaLearner, function_tasks
from bilevel_anil.training.allocator import keep_freed_memory


def sine_task(g: torch.Generator):
    amplitude, phase = 0.1 + 4.9 * torch.rand(1, generator=g), 3.1416 * torch.rand(1, generator=g)
    x = 10 * torch.rand(20, 1, generator=g) - 5
    y = amplitude * torch.sin(x + phase)
    return x[:10], y[:10], x[10:], y[10:]


def learn2learn_steps(net: nn.Module, batches, lr: float, meta_lr: float) -> float:
    with contextlib.redirect_stderr(io.StringIO()):
        import learn2learn as l2l
    maml = l2l.algorithms.MAML(net, lr=lr)
    opt = torch.optim.Adam(maml.parameters(), meta_lr)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    for batch in batches:
        opt.zero_grad()
        total = 0.0
        for b in range(batch.tasks):
            learner = maml.clone()
            learner.adapt(loss_fn(learner(batch.support.x[b]), batch.support.y[b]))
            total = total + loss_fn(learner(batch.query.x[b]), batch.query.y[b])
        (total / batch.tasks).backward()
        opt.step()
    return time.perf_counter() - start


def package_steps(net: nn.Module, batches, lr: float, meta_lr: float) -> float:
    learner = MetaLearner(net, "maml", loss="mse", inner_lr=lr, meta_lr=meta_lr)
    start = time.perf_counter()
    for batch in batches:
        learner.meta_step(batch)
    return time.perf_counter() - start


def first_gradients(net: nn.Module, batch, lr: float) -> float:
    with contextlib.redirect_stderr(io.StringIO()):
        import learn2learn as l2l
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    got = MetaLearner(a, "maml", loss="mse", inner_lr=lr).meta_gradient(batch)
    maml, loss_fn, total = l2l.algorithms.MAML(b, lr=lr), nn.MSELoss(), 0.0
    for t in range(batch.tasks):
        learner = maml.clone()
        learner.adapt(loss_fn(learner(batch.support.x[t]), batch.support.y[t]))
        total = total + loss_fn(learner(batch.query.x[t]), batch.query.y[t])
    (total / batch.tasks).backward()
    return max(((got[n] - p.grad).norm() / p.grad.norm()).item() for n, p in b.named_parameters())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--meta-batch", type=int, default=25)
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tasks = function_tasks(sine_task, seed=0)
    batches = [tasks.sample(args.meta_batch) for _ in range(args.steps)]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    print(f"first meta-gradient, largest relative difference per tensor: {first_gradients(net, batches[0], 0.01):.1e}")
    ours = package_steps(copy.deepcopy(net), batches, 0.01, 0.001)
    theirs = learn2learn_steps(copy.deepcopy(net), batches, 0.01, 0.001)
    print(f"{args.steps} MAML steps, meta-batch {args.meta_batch}: bilevel_anil {ours:.2f} s "
          f"({args.steps / ours:.1f} steps/s), learn2learn {theirs:.2f} s ({args.steps / theirs:.1f} steps/s): "
          f"{theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
