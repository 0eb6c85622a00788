"""Independent reference for the implicit meta-gradient: plain autograd per task, the exact
inner Hessian from ``torch.autograd.functional.hessian`` and a direct linear solve."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from bilevel_anil.core.algorithms import Algorithm
from bilevel_anil.core.tasks import TaskBatch
from bilevel_anil.core.learner import Learner


def implicit_reference(model: torch.nn.Module, algorithm: Algorithm, batch: TaskBatch, steps: int, lr: float,
                       lam: float, loss: str = "cross_entropy", damping: float = 0.0,
                       lam_damping: float = 0.0, pullback: bool = False, names: list[str] = None,
                       head_init: str = "learned") -> list[torch.Tensor]:
    """Run ``steps`` SGD steps on each task's support loss + (λ/2)‖φ − θ‖² from θ (with
    ``pullback``: on the support loss alone, then φ ← φ − lr·λ(φ − θ)), then
    ``dL/dθ = ∂L/∂θ + (−∂²g/∂θ∂φ) · H⁻¹ ∂L/∂φ`` with ``H = ∂²g/∂φ²`` solved exactly; with
    damping d and lam_damping c, ``H⁻¹`` is replaced by ``((1 + d)·I + (H − λI)/(λ + c))⁻¹ / λ``
    (the iMAML reference code's system; d = c = 0 gives ``H⁻¹``). ``head_init``: the head's
    starting point and anchor (``helpers.start_head``, a function of θ; else θ itself)."""
    from helpers import start_head

    loss_fn = F.cross_entropy if loss == "cross_entropy" else F.mse_loss
    theta = dict(model.named_parameters())
    names = names or Learner(model, algorithm).adapted_names
    shapes = [theta[n].shape for n in names]
    sizes = [theta[n].numel() for n in names]
    total = [torch.zeros_like(p) for p in theta.values()]

    def unflatten(vec):
        return {n: v.view(s) for n, v, s in zip(names, vec.split(sizes), shapes)}

    for b in range(batch.tasks):
        def anchor_of(th):
            return {**th, **start_head(model, th, batch.support.x[b], batch.support.y[b], head_init)}

        def g(flat_phi, th):
            params = {**th, **unflatten(flat_phi)}
            support = loss_fn(functional_call(model, params, (batch.support.x[b],)), batch.support.y[b])
            anchor = anchor_of(th)
            prox = sum((params[n] - anchor[n]).pow(2).sum() for n in names)
            return support + 0.5 * lam * prox

        detached = {n: p.detach() for n, p in theta.items()}
        start = anchor_of(detached)
        phi = torch.cat([start[n].detach().flatten() for n in names])
        anchor = phi.clone()
        for _ in range(steps):
            phi = phi.detach().requires_grad_()
            objective = g(phi, detached) - (0.5 * lam * (phi - anchor).pow(2).sum() if pullback else 0)
            phi = phi - lr * torch.autograd.grad(objective, phi)[0]
        if pullback:
            phi = phi - lr * lam * (phi - anchor)
        phi = phi.detach().requires_grad_()
        query = loss_fn(functional_call(model, {**theta, **unflatten(phi)}, (batch.query.x[b],)), batch.query.y[b])
        direct = torch.autograd.grad(query, list(theta.values()) + [phi], allow_unused=True)
        v = direct[-1]
        # torch.autograd (a loop of double backwards), not torch.func.hessian: torch.func's second
        # derivatives through a training-mode batch_norm are wrong (docs/design/notes.md, torch.func note)
        hessian = torch.autograd.functional.hessian(lambda f: g(f, detached), phi.detach())
        eye = torch.eye(len(v), dtype=v.dtype)
        system = (1 + damping) * eye + (hessian - lam * eye) / (lam + lam_damping)
        x = torch.linalg.solve(system, v) / lam
        inner_grad = torch.autograd.grad(g(phi, theta), phi, create_graph=True)[0]
        mixed = torch.autograd.grad(inner_grad, list(theta.values()), grad_outputs=x, allow_unused=True)
        for i, (d, m) in enumerate(zip(direct[:-1], mixed)):
            total[i] += (0 if d is None else d) - (0 if m is None else m)
    return [t / batch.tasks for t in total]
