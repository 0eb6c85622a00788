"""The implicit meta-gradient's settings and its linear solver, free of Betty.

``HypergradConfig`` names the approximation of ``H⁻¹ v`` (see
``bilevel_anil.problems.hypergradients``, which registers it with Betty) and
``cg_solve`` is the textbook per-task conjugate gradient, in the ``solve(matvec, b)``
form of TorchOpt's linear solvers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

HYPERGRADS = ("cg", "neumann", "darts", "betty-cg")

Vectors = Sequence[Tensor]


def _task_dot(a: Vectors, b: Vectors) -> Tensor:
    """Per-task inner products ``[B]`` of lists of ``[B, ...]`` tensors."""
    return sum((x * y).flatten(1).sum(dim=1) for x, y in zip(a, b))


def _per_task(scalars: Tensor, like: Tensor) -> Tensor:
    return scalars.view(-1, *[1] * (like.dim() - 1))


def cg_solve(matvec: Callable[[Vectors], Vectors], b: Vectors, iterations: int, tol: float = 0.0) -> list[Tensor]:
    """Textbook conjugate gradient for ``A x = b``, run independently for each task.

    ``b`` is a list of ``[B, ...]`` tensors and ``A`` (given by ``matvec``) is block diagonal
    over the B tasks and symmetric positive definite, as the inner Hessian of a meta-batch
    is; each task gets its own step sizes, exactly as B separate solves would (the iMAML
    paper's per-task CG). Starts from ``x = 0``; ``iterations`` products at most; a task stops
    once its residual is at most ``tol`` times its ``‖b‖``.
    """
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rs = _task_dot(r, r)
    stop = tol ** 2 * rs
    for _ in range(iterations):
        active = rs > stop
        if not bool(active.any()):
            break
        ap = matvec(p)
        curvature = _task_dot(p, ap)
        step = torch.where(active, rs / torch.where(active, curvature, torch.ones_like(curvature)),
                           torch.zeros_like(rs))
        x = [xi + _per_task(step, pi) * pi for xi, pi in zip(x, p)]
        r = [ri - _per_task(step, api) * api for ri, api in zip(r, ap)]
        rs_new = _task_dot(r, r)
        beta = torch.where(active, rs_new / torch.where(active, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = [ri + _per_task(beta, pi) * pi for ri, pi in zip(r, p)]
        rs = torch.where(active, rs_new, rs)
    return x


@dataclass
class HypergradConfig:
    """Which approximation of ``H⁻¹ v`` the implicit meta-gradient uses, and its parameters.

    iterations: CG's Hessian-vector products or Neumann's terms; alpha: Neumann's step
    (must be below 2/‖H‖ to converge); darts_alpha: DARTS's finite-difference radius;
    damping, lam_damping: ``d`` and ``c`` of ``cg``'s system ``((1 + d)·I + H_L/(λ + c)) x = v``
    (0 and 0: the exact implicit gradient; the iMAML authors' code uses 1 and 10; see
    ``conjugate_gradient``).
    """

    method: str = "cg"
    iterations: int = 5
    alpha: float = 0.1
    darts_alpha: float = 0.01
    damping: float = 0.0
    lam_damping: float = 0.0

