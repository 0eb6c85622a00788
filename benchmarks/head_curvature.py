"""How far one head step goes: α·λ_max of the head's support-loss Hessian on sine test tasks.

    python benchmarks/head_curvature.py runs/anil-sine-.../best.pt [--shots 5] [--tasks 600]

For a linear head on fixed features Φ (with a bias column) the support MSE is quadratic in
the head, with Hessian (2/K)·ΦᵀΦ. Plain SGD with step α on it diverges along any direction
whose eigenvalue λ has α·λ > 2, and α·λ = 1 is a Newton step. The tasks are the run's K=5
meta-test tasks (same seed offset as ``recipes.suites.sine_suite``); α is the run's inner lr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bilevel_anil  # noqa: E402
from bilevel_anil.core.tasks import fixed_tasks
from bilevel_anil.data.sine import SineTasks
from bilevel_anil.data.sine import SINE_TEST_SHOTS


def head_step_reach(model: torch.nn.Module, x: torch.Tensor, lr: float) -> torch.Tensor:
    """α·λ_max per task for support inputs ``x`` of shape ``[B, K, 1]``."""
    with torch.no_grad():
        features = model.body(x)
        phi = torch.cat([features, torch.ones_like(features[..., :1])], -1).double()
        hessian = 2.0 / x.shape[1] * phi.transpose(1, 2) @ phi
        return lr * torch.linalg.eigvalsh(hessian)[:, -1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="best.pt or last.pt of a sine run")
    p.add_argument("--shots", type=int, default=5, choices=SINE_TEST_SHOTS)
    p.add_argument("--tasks", type=int, default=600)
    args = p.parse_args()
    loaded = bilevel_anil.load(args.checkpoint)
    config = torch.load(args.checkpoint, map_location="cpu", weights_only=False)["config"]
    index = SINE_TEST_SHOTS.index(args.shots)
    tasks = fixed_tasks(SineTasks(args.shots, config["test_queries"]), args.tasks, seed=config["seed"] + 2 + index)
    reach = head_step_reach(loaded.learner.model, tasks.support.x, loaded.inner_lr)
    print(f"{args.checkpoint}: α = {loaded.inner_lr}, K = {args.shots}, {args.tasks} tasks; α·λ_max median "
          f"{reach.median():.2f}, 90th percentile {reach.quantile(0.9):.2f}, max {reach.max():.2f}; "
          f"share above 2 (repeated steps diverge): {(reach > 2).double().mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
