"""Why an iMAML configuration learns or not: how well its inner problem is solved, and how
well its implicit meta-gradient points along the true one, on one Omniglot meta-batch.

    python benchmarks/imaml_diagnosis.py --data-root ../shared/data [--tasks 32]

For each configuration (network, inner steps K, inner lr α, λ, CG damping δ) at the
network's initialisation:

* stationarity: ‖∇φ g(φ_K)‖ / ‖∇φ g(θ)‖ per task (median), g = support loss + (λ/2)‖φ − θ‖²;
  the implicit gradient assumes this is 0;
* cosine of the implicit meta-gradient (CG, 5 iterations; damped: the authors' system
  ((1 + 1)·I + H/(λ + 10)) x = ∇L) with the unrolled one
  through the same K steps — the exact derivative of the query loss after the inner loop
  that is actually run, computed by ``--grad unrolled`` on the same objective; and the
  cosine of the first-order gradient (query gradient at φ_K) with it, for scale.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bilevel_anil.core.options import get_algorithm
from bilevel_anil.data import ClassificationTasks, load_omniglot, seeded
from bilevel_anil.core.tasks import RepeatBatch
from bilevel_anil.engines import step_engine
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import image_model
from bilevel_anil.problems import HypergradConfig

CONFIGS = [  # name, arch, K, α, d (damped system with c = 10 when d > 0)
    ("old default", "conv4", 5, 0.4, 0.0),
    ("old default, 16 steps at 0.1", "conv4", 16, 0.1, 0.0),
    ("strided net, 5 steps at 0.4", "conv4-strided", 5, 0.4, 0.0),
    ("strided net, 16 steps at 0.1", "conv4-strided", 16, 0.1, 0.0),
    ("preset: strided, 16 at 0.1, damped", "conv4-strided", 16, 0.1, 1.0),
]


def flat(grads) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


def diagnose(arch: str, steps: int, lr: float, damping: float, lam: float, batch, seed: int) -> dict:
    torch.manual_seed(seed)
    base = image_model(arch, 5)
    state = {k: v.clone() for k, v in base.state_dict().items()}

    def meta_gradient(grad: str, first_order: bool = False, hyper_damping: float = 0.0) -> torch.Tensor:
        model = image_model(arch, 5)
        model.load_state_dict(state)
        algo = get_algorithm("imaml", grad=grad)
        if first_order:
            algo = get_algorithm("imaml", first_order=True, grad="unrolled")
        engine = step_engine(Learner(model, algo, lam=lam), RepeatBatch(batch), batch.tasks, steps, lr,
                             torch.optim.SGD(model.parameters(), lr=0.0), HypergradConfig("cg", 5, damping=hyper_damping,
                                                         lam_damping=10.0 if hyper_damping else 0.0))
        engine.train_step()
        return flat(engine.upper.last_grads)

    implicit = meta_gradient("implicit", hyper_damping=damping)
    unrolled = meta_gradient("unrolled")
    first = meta_gradient("unrolled", first_order=True)
    learner = Learner(base, get_algorithm("imaml"), lam=lam)
    theta = dict(base.named_parameters())
    phi = learner.adapt(theta, batch.support.x, batch.support.y, steps, lr)
    start = learner.initial_fast_params({n: p.detach() for n, p in theta.items()}, batch.support.x, batch.support.y)

    def inner_grad_norms(fast):
        fast = {n: p.detach().clone().requires_grad_() for n, p in fast.items()}
        predict = learner.predictor({n: p.detach() for n, p in theta.items()}, batch.support.x)
        loss = learner.inner_loss(predict, fast, batch.support.y, {n: p.detach() for n, p in theta.items()})
        grads = torch.autograd.grad(loss, list(fast.values()))
        return torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads))

    stationarity = (inner_grad_norms(phi) / inner_grad_norms(start)).median().item()
    return {"stationarity": stationarity,
            "cos_implicit_unrolled": F.cosine_similarity(implicit, unrolled, dim=0).item(),
            "cos_first_order_unrolled": F.cosine_similarity(first, unrolled, dim=0).item()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="data")
    p.add_argument("--tasks", type=int, default=32)
    p.add_argument("--lam", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    splits = load_omniglot(Path(args.data_root), download=False)
    with seeded(args.seed):
        batch = ClassificationTasks(splits["train"], 5, 1, 1, rotate=True).sample(args.tasks)
    print(f"Omniglot 5-way 1-shot, {args.tasks} tasks, λ = {args.lam}, CG 5 iterations, θ at initialisation "
          f"(seed {args.seed})")
    print(f"{'configuration':<34} {'stationarity':>12} {'cos(implicit, unrolled)':>24} {'cos(first order, unrolled)':>27}")
    for name, arch, steps, lr, damping in CONFIGS:
        r = diagnose(arch, steps, lr, damping, args.lam, batch, args.seed)
        print(f"{name:<34} {r['stationarity']:>12.3f} {r['cos_implicit_unrolled']:>24.3f} "
              f"{r['cos_first_order_unrolled']:>27.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
