"""The benchmark's learn2learn-style reference computes the same meta-gradient as the package
(float64, relative L2 error ≤ 1e-10), so the speed comparison compares equal work."""
import sys
from pathlib import Path

import pytest
import torch

from bilevel_anil.models import Conv4

from helpers import random_episodes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_benchmarks  # noqa: E402


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("name", run_benchmarks.ALGOS)
def test_reference_meta_gradient_equals_ours(name, steps):
    torch.manual_seed(0)
    base = Conv4(ways=5, hidden=8)
    batch = random_episodes(tasks=3, ways=5, shots=1, queries=1)
    assert run_benchmarks.gradient_check(base, name, steps, batch, "cpu") <= 1e-10


def test_floor_step_is_one_plain_pass_over_every_image():
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8)
    batch = random_episodes(tasks=2, ways=5, shots=1, queries=2)
    seen = []
    model.body[0].conv.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    run_benchmarks.floor_step(model, batch, torch.optim.SGD(model.parameters(), lr=0.0))()
    assert seen == [2 * 5 * (1 + 2)]


@pytest.mark.parametrize("per_task", [False, True])
def test_next_factors_previous_forward_computes_the_same_features(per_task):
    """next_factors.py times the task-channel layout against the forward it replaced and against
    itself in channels_last: all must compute the same features and gradients (float64),
    shared or per-task parameters."""
    import next_factors

    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8).double()
    x = torch.rand(3, 4, 1, 28, 28, dtype=torch.float64)
    theta = dict(model.named_parameters())
    if per_task:
        theta = {n: p.unsqueeze(0).repeat(3, *[1] * p.dim()) + 0.01 * torch.randn(3, *p.shape, dtype=p.dtype)
                 for n, p in theta.items()}
    after = model.body_forward(theta, x)
    leaves = [p for n, p in theta.items() if n.startswith("body.")]
    for variant in (next_factors.previous_body_forward, next_factors.channels_last_body_forward):
        before = variant(model, theta, x)
        torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)
        for a, b in zip(torch.autograd.grad(after.sin().sum(), leaves, retain_graph=True),
                        torch.autograd.grad(before.sin().sum(), leaves)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
