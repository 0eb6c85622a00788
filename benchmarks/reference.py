"""Reference outer steps written the way learn2learn's examples do it: a Python loop over the
tasks of the meta-batch, ``l2l.algorithms.MAML(...).clone()`` / ``adapt()`` per task, the
network's ordinary forward on one task's set at a time, ``backward()`` per task and the
gradients averaged over the meta-batch (as in learn2learn's ``maml_omniglot.py`` and
``anil_fc100.py``). iMAML (not in learn2learn) follows the same style: per-task adaptation on
the proximal objective, then a per-task CG solve for the implicit gradient.
"""
from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import nn

with contextlib.redirect_stderr(io.StringIO()):
    import learn2learn as l2l


def maml_step(model: nn.Module, batch, steps: int, lr: float, first_order: bool, head_only: bool) -> list[torch.Tensor]:
    """MAML (``head_only=False``) or ANIL (``head_only=True``); returns the meta-gradient
    (``model.parameters()`` order) left in ``.grad``."""
    model.zero_grad()
    if head_only:
        body, head = model.body, l2l.algorithms.MAML(model.head, lr=lr, first_order=first_order)
    else:
        wrapped = l2l.algorithms.MAML(model, lr=lr, first_order=first_order)
    for b in range(batch.tasks):
        sx, sy, qx, qy = batch.support.x[b], batch.support.y[b], batch.query.x[b], batch.query.y[b]
        if head_only:
            learner, support_features, query_features = head.clone(), body(sx), body(qx)
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(support_features), sy))
            loss = F.cross_entropy(learner(query_features), qy)
        else:
            learner = wrapped.clone()
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(sx), sy))
            loss = F.cross_entropy(learner(qx), qy)
        loss.backward()
    for p in model.parameters():
        p.grad.mul_(1.0 / batch.tasks)
    return [p.grad.detach().clone() for p in model.parameters()]


def imaml_step(model: nn.Module, batch, steps: int, lr: float, lam: float, cg_iterations: int) -> list[torch.Tensor]:
    """iMAML (full network): per task, ``steps`` SGD steps on support loss + (λ/2)‖φ − θ‖² from
    θ, then ``λ·(H + λI)⁻¹ ∇φ L_query`` with ``cg_iterations`` CG steps, averaged."""
    model.zero_grad()
    theta = [p.detach() for p in model.parameters()]
    wrapped = l2l.algorithms.MAML(model, lr=lr, first_order=True)
    total = [torch.zeros_like(t) for t in theta]
    for b in range(batch.tasks):
        sx, sy, qx, qy = batch.support.x[b], batch.support.y[b], batch.query.x[b], batch.query.y[b]
        learner = wrapped.clone()
        for _ in range(steps):
            prox = sum((p - t).pow(2).sum() for p, t in zip(learner.parameters(), theta))
            learner.adapt(F.cross_entropy(learner(sx), sy) + 0.5 * lam * prox)
        phi = [p.detach().requires_grad_() for p in learner.parameters()]
        params = dict(zip([n for n, _ in model.named_parameters()], phi))
        query = F.cross_entropy(torch.func.functional_call(model, params, (qx,)), qy)
        v = torch.autograd.grad(query, phi)
        inner = F.cross_entropy(torch.func.functional_call(model, params, (sx,)), sy) + \
            0.5 * lam * sum((p - t).pow(2).sum() for p, t in zip(phi, theta))
        inner_grad = torch.autograd.grad(inner, phi, create_graph=True)
        x = [torch.zeros_like(t) for t in v]
        r = [t.clone() for t in v]
        p = [t.clone() for t in v]
        rs = sum((t * t).sum() for t in r)
        for _ in range(cg_iterations):
            ap = torch.autograd.grad(inner_grad, phi, grad_outputs=p, retain_graph=True)
            step = rs / sum((a * c).sum() for a, c in zip(p, ap))
            x = [xi + step * pi for xi, pi in zip(x, p)]
            r = [ri - step * ai for ri, ai in zip(r, ap)]
            rs_new = sum((t * t).sum() for t in r)
            p = [ri + (rs_new / rs) * pi for ri, pi in zip(r, p)]
            rs = rs_new
        total = [acc + lam * xi for acc, xi in zip(total, x)]
    grads = [t / batch.tasks for t in total]
    for param, g in zip(model.parameters(), grads):
        param.grad = g.clone()
    return grads
