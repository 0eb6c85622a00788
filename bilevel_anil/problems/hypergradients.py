"""Implicit meta-gradients through Betty's hypergradient registry.

Betty computes, for a lower problem with inner objective ``g(φ, θ)`` at its solution ``φ``,
``dL/dθ = ∂L/∂θ − ∂²g/∂θ∂φ · H⁻¹ · ∂L/∂φ`` with ``H = ∂²g/∂φ²``; methods differ in how
they approximate ``H⁻¹ v``:

* ``cg``: conjugate gradient, ``iterations`` Hessian-vector products, run per task (this
  module's implementation, registered in Betty as ``"cg_exact"``; see below);
* ``betty-cg``: Betty 0.2.1's own ``cg``, unchanged (for comparison);
* ``neumann``: ``α·Σ_{j≤k} (I − αH)^j v`` with ``iterations`` terms and step ``alpha``;
* ``darts``: ``H⁻¹ ≈ I``, the mixed derivative by a finite difference of radius ``darts_alpha``.

Betty 0.2.1's ``cg`` differs from textbook CG in two ways: the new search direction is built
from the *previous* residual (``p = r_old + β·p``), so it is not conjugate and does not
converge in n steps on an n-dimensional quadratic; and ``cg_alpha`` scales the curvature in
the step size but not in the residual update, so only ``cg_alpha = 1`` is a consistent
solver. ``cg`` here is the textbook method and has no step size.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from betty.configs import Config
from betty.hypergradient import jvp_fn_mapping
from betty.utils import neg_with_none
from torch import Tensor

HYPERGRADS = ("cg", "neumann", "darts", "betty-cg")
BETTY_TYPES = {"cg": "cg_exact", "neumann": "neumann", "darts": "darts", "betty-cg": "cg"}

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


def conjugate_gradient(vector: Vectors, curr, prev, sync: bool):
    """Betty hypergradient function (signature of ``betty.hypergradient.cg``) with textbook CG;
    ``curr.config.cg_iterations`` Hessian-vector products.

    With the lower problem's ``cg_damping = (d, c)`` (default ``(0, 0)``) and its proximal
    strength λ, it solves ``((1 + d)·I + H_L/(λ + c)) x = v`` for the query gradient v, where
    ``H_L`` is the support loss's Hessian, and returns x as the meta-gradient (for parameters
    that enter only through φ). ``d = c = 0`` is ``(I + H_L/λ) x = v``, the exact implicit
    gradient ``λ(H_L + λI)⁻¹ v``; ``d = 1, c = 10`` is the iMAML reference code's damped system
    (imaml_dev: ``Av = (1 + cg_damping)·v + Hv/(λ + lam_damping)`` with lam_damping 10).
    """
    damping, lam_damping = getattr(curr, "cg_damping", (0.0, 0.0))
    lam = curr.learner.lam
    in_loss = curr.training_step_exec(curr.cur_batch)
    params = curr.trainable_parameters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_grad = torch.autograd.grad(in_loss, params, create_graph=True)

    def matvec(v: Vectors) -> list[Tensor]:  # ((1 + d)·I + (H_g − λI)/(λ + c)) v, H_g = H_L + λI
        hv = torch.autograd.grad(in_grad, params, grad_outputs=v, retain_graph=True)
        return [(1 + damping) * u + (h - lam * u) / (lam + lam_damping) for h, u in zip(hv, v)]

    x = cg_solve(matvec, [v.detach() for v in vector], curr.config.cg_iterations)
    # ∂²g/∂θ∂φ = −λI for the adapted parameters: back-propagating x/λ through it yields x
    y = [t / lam for t in x]
    if sync:
        torch.autograd.backward(in_grad, inputs=prev.trainable_parameters(), grad_tensors=[neg_with_none(t) for t in y])
        return None
    implicit = torch.autograd.grad(in_grad, prev.trainable_parameters(), grad_outputs=y, allow_unused=True)
    return [neg_with_none(g) for g in implicit]


jvp_fn_mapping.setdefault(BETTY_TYPES["cg"], conjugate_gradient)


@dataclass
class HypergradConfig:
    """Which approximation of ``H⁻¹ v`` the implicit meta-gradient uses, and its parameters.

    iterations: CG's Hessian-vector products or Neumann's terms; alpha: Neumann's step
    (must be below 2/‖H‖ to converge); darts_alpha: DARTS's finite-difference radius;
    damping, lam_damping: ``d`` and ``c`` of ``cg``'s system ``((1 + d)·I + H_L/(λ + c)) x = v``
    (0 and 0: the exact implicit gradient; the iMAML authors' code uses 1 and 10; see
    :func:`conjugate_gradient`).
    """

    method: str = "cg"
    iterations: int = 5
    alpha: float = 0.1
    darts_alpha: float = 0.01
    damping: float = 0.0
    lam_damping: float = 0.0

    def betty_config(self, **kwargs) -> Config:
        """The lower problem's Betty ``Config`` for this method (``cg_alpha`` stays 1)."""
        if self.method not in HYPERGRADS:
            raise ValueError(f"unknown hypergradient {self.method!r}: choose one of {', '.join(HYPERGRADS)}")
        return Config(type=BETTY_TYPES[self.method], cg_iterations=self.iterations, cg_alpha=1.0,
                      neumann_iterations=self.iterations, neumann_alpha=self.alpha,
                      darts_alpha=self.darts_alpha, **kwargs)
