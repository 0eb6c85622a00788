"""Shared test helpers: a fixed-batch sampler, an engine builder and the autograd reference."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from bilevel_anil.core.algorithms import Algorithm
from bilevel_anil.core.tasks import RepeatBatch, TaskBatch, TaskSet
from bilevel_anil.engines import MetaEngine, step_engine
from bilevel_anil.core.learner import Learner
from bilevel_anil.problems import HypergradConfig


def random_episodes(tasks: int, ways: int, shots: int, queries: int, shape=(1, 28, 28), seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    def labels(k: int) -> torch.Tensor:
        return torch.arange(ways).repeat_interleave(k).repeat(tasks, 1)

    return TaskBatch(TaskSet(torch.rand(tasks, ways * shots, *shape, generator=g), labels(shots)),
                        TaskSet(torch.rand(tasks, ways * queries, *shape, generator=g), labels(queries)))


def build_engine(learner: Learner, batch: TaskBatch, inner_steps: int, inner_lr: float, tmp: Path,
                 meta_lr: float = 1e-3, hypergrad: HypergradConfig = None) -> MetaEngine:
    engine = step_engine(learner, RepeatBatch(batch), batch.tasks, inner_steps, inner_lr,
                         torch.optim.Adam(learner.model.parameters(), lr=meta_lr), hypergrad)
    return engine


def start_head(model: torch.nn.Module, params: dict, x: torch.Tensor, y: torch.Tensor, head_init: str) -> dict:
    """One task's starting head ``model.head`` (an nn.Linear), written independently of the
    package: {} for "learned", zeros, or Proto-MAML's w_c = 2μ_c, b_c = −‖μ_c‖² from the
    head's input (taken by a forward pre-hook) averaged class by class."""
    if head_init == "learned":
        return {}
    if head_init == "zero":
        return {n: torch.zeros_like(params[n]).requires_grad_() for n in ("head.weight", "head.bias")}
    seen = []
    hook = model.head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        functional_call(model, params, (x,))
    finally:
        hook.remove()
    means = torch.stack([seen[0][y == c].mean(dim=0) for c in range(model.head.out_features)])
    return {"head.weight": 2 * means, "head.bias": -(means * means).sum(dim=1)}


def reference_meta_gradient(model: torch.nn.Module, algorithm: Algorithm, batch: TaskBatch,
                            inner_steps: int, inner_lr: float, loss: str = "cross_entropy",
                            lam: float = 0.0, pullback: bool = False, adapted: list[str] = None,
                            head_init: str = "learned") -> list[torch.Tensor]:
    """Plain torch.autograd, one task at a time, through the network's ordinary forward
    (with the proximal term (λ/2)‖φ − φ₀‖² in the inner objective when ``lam`` > 0, or with
    ``pullback`` instead as one step φ ← φ − lr·λ(φ − φ₀) after the support-loss steps); the
    gradient of the parameters that require one (the meta-trained ones; zero where unused).
    ``adapted``: the names the inner loop adapts (default: what the package's learner picks);
    ``head_init``: the starting head φ₀ (:func:`start_head`; else φ₀ = θ)."""
    loss_fn = F.cross_entropy if loss == "cross_entropy" else F.mse_loss
    theta = dict(model.named_parameters())
    adapted = adapted or Learner(model, algorithm).adapted_names
    total = 0.0
    for b in range(batch.tasks):
        # fresh nodes: the inner gradient is the partial one in φ, not through a prototype head built from θ
        params = {**{n: p.clone() for n, p in theta.items()},
                  **start_head(model, theta, batch.support.x[b], batch.support.y[b], head_init)}
        anchor = dict(params)
        for _ in range(inner_steps):
            support_loss = loss_fn(functional_call(model, params, (batch.support.x[b],)), batch.support.y[b])
            if lam and not pullback:
                support_loss = support_loss + 0.5 * lam * sum((params[n] - anchor[n]).pow(2).sum() for n in adapted)
            grads = torch.autograd.grad(support_loss, [params[n] for n in adapted],
                                        create_graph=not algorithm.first_order)
            params.update({n: params[n] - inner_lr * g for n, g in zip(adapted, grads)})
        if pullback:
            params.update({n: params[n] - inner_lr * lam * (params[n] - anchor[n]) for n in adapted})
        total = total + loss_fn(functional_call(model, params, (batch.query.x[b],)), batch.query.y[b])
    wanted = [p for p in theta.values() if p.requires_grad]
    grads = torch.autograd.grad(total / batch.tasks, wanted, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(wanted, grads)]


def relative_error(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    g = torch.cat([t.flatten() for t in got])
    w = torch.cat([t.flatten() for t in want])
    return ((g - w).norm() / w.norm()).item()


def tmpfs(folder: Path, options: str):
    """A context manager: a tmpfs mounted at ``folder`` (created) with ``options`` for its
    duration; the test is skipped where mounting needs a root this process is not."""
    import contextlib
    import os
    import shutil
    import subprocess

    import pytest

    @contextlib.contextmanager
    def mounted():
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
            pytest.skip("mounting a tmpfs needs root")
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)])
    return mounted()
