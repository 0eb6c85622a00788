"""benchmarks/head_curvature.py: α·λ_max of the head's support-loss Hessian equals the top
eigenvalue of ``torch.func.hessian`` of the MSE over the head (float64, ≤ 1e-10 relative),
and crossing 2 is where repeated head steps start to diverge."""
import sys
from pathlib import Path

import torch
from torch.func import functional_call, hessian

from bilevel_anil.data.sine import SineTasks
from bilevel_anil.models import MLP

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import head_curvature  # noqa: E402


def test_reach_equals_top_eigenvalue_of_autograd_hessian():
    torch.manual_seed(0)
    model = MLP().double()
    x = SineTasks(5, 1).sample(3).support.x.double()
    y = torch.randn(3, 5, 1, dtype=torch.float64)
    got = head_curvature.head_step_reach(model, x, lr=0.01)
    params = {n: p.detach() for n, p in model.named_parameters()}
    flat_head = torch.cat([params["head.weight"].flatten(), params["head.bias"]])
    for b in range(3):
        def loss(flat):
            head = {"head.weight": flat[:40].view(1, 40), "head.bias": flat[40:]}
            return ((functional_call(model, {**params, **head}, (x[b],)) - y[b]) ** 2).mean()

        want = 0.01 * torch.linalg.eigvalsh(hessian(loss)(flat_head))[-1]
        assert abs(got[b] - want) <= 1e-10 * want


def test_head_steps_diverge_exactly_when_reach_exceeds_two():
    torch.manual_seed(1)
    model = MLP().double()
    x = SineTasks(5, 1).sample(1).support.x.double()
    y = torch.randn(1, 5, 1, dtype=torch.float64)
    reach = head_curvature.head_step_reach(model, x, lr=1.0)[0].item()
    for factor, diverges in ((0.9, False), (1.1, True)):
        lr = factor * 2.0 / reach
        w = model.head.weight.detach().clone().requires_grad_(True)
        b = model.head.bias.detach().clone().requires_grad_(True)
        features = model.body(x[0]).detach()
        for _ in range(300):
            loss = ((features @ w.T + b - y[0]) ** 2).mean()
            gw, gb = torch.autograd.grad(loss, [w, b])
            w, b = (w - lr * gw).detach().requires_grad_(True), (b - lr * gb).detach().requires_grad_(True)
        final = ((features @ w.T + b - y[0]) ** 2).mean().item()
        assert (final > 1e6) == diverges, (factor, final)
