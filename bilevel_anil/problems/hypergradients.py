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

import torch
from betty.hypergradient import jvp_fn_mapping
from betty.utils import neg_with_none
from torch import Tensor

from ..core.solvers import HYPERGRADS, HypergradConfig, Vectors, cg_solve

# the package's method names -> the names of Betty's hypergradient registry
BETTY_TYPES = {"cg": "cg_exact", "neumann": "neumann", "darts": "darts", "betty-cg": "cg"}

__all__ = ["BETTY_TYPES", "HYPERGRADS", "HypergradConfig", "betty_config", "cg_solve", "conjugate_gradient",
           "register_hypergradients"]


def betty_config(hypergrad: HypergradConfig, **kwargs):
    """The lower problem's Betty ``Config`` for ``hypergrad``'s method (``cg_alpha`` stays 1)."""
    from betty.configs import Config

    if hypergrad.method not in HYPERGRADS:
        raise ValueError(f"unknown hypergradient {hypergrad.method!r}: choose one of {', '.join(HYPERGRADS)}")
    return Config(type=BETTY_TYPES[hypergrad.method], cg_iterations=hypergrad.iterations, cg_alpha=1.0,
                  neumann_iterations=hypergrad.iterations, neumann_alpha=hypergrad.alpha,
                  darts_alpha=hypergrad.darts_alpha, **kwargs)

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


def register_hypergradients() -> None:
    """Make this module's CG Betty's ``"cg_exact"`` hypergradient type. Called when a lower
    problem is built (``bilevel_anil.problems.build_lower``), not when the package is
    imported: importing bilevel_anil changes nothing in Betty."""
    jvp_fn_mapping.setdefault(BETTY_TYPES["cg"], conjugate_gradient)
