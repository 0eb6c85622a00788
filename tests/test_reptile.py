"""Reptile: one outer step through Betty equals a plain reference; its Adam inner optimiser.

The reference runs each task on its own with ``torch.optim.Adam(betas=(0, 0.999))`` over the
same minibatches and then moves θ by ε·mean_b(φ_b − θ). Float64; tolerance 1e-8 relative L2
(Adam divides by √v̂ + 1e-8, which amplifies rounding where a gradient entry is near 0).
"""
import copy

import torch
import torch.nn.functional as F

from bilevel_anil.core.algorithms import ALGORITHMS
from bilevel_anil.core.options import get_algorithm
from bilevel_anil.engines import step_engine
from bilevel_anil.core.tasks import RepeatBatch
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import image_model

from helpers import random_episodes, relative_error

TOL = 1e-8


def reference_reptile(model, batch, steps, lr, inner_batch, epsilon, order):
    theta = [p.detach().clone() for p in model.parameters()]
    adapted = []
    for b in range(batch.tasks):
        net = copy.deepcopy(model)
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.0, 0.999))
        x, y = batch.support.x[b][order[b]], batch.support.y[b][order[b]]
        for i in range(steps):
            index = (torch.arange(inner_batch) + i * inner_batch) % len(y)
            opt.zero_grad()
            F.cross_entropy(net(x[index]), y[index]).backward()
            opt.step()
        adapted.append([p.detach() for p in net.parameters()])
    return [t + epsilon * torch.stack([a[i] - t for a in adapted]).mean(0) for i, t in enumerate(theta)]


def test_reptile_outer_step_matches_plain_reference():
    torch.manual_seed(0)
    model = image_model("conv4-strided", 5).double()
    batch = random_episodes(tasks=3, ways=5, shots=4, queries=1, seed=1)
    batch.support.x, batch.query.x = batch.support.x.double(), batch.query.x.double()
    epsilon, steps, lr, inner_batch = 0.7, 3, 0.01, 6
    before = [p.detach().clone() for p in model.parameters()]
    want = reference_reptile(model, batch, steps, lr, inner_batch, epsilon,
                             order=_order_drawn_with_seed(5, batch))
    engine = step_engine(Learner(model, ALGORITHMS["reptile"]), RepeatBatch(batch), batch.tasks, steps, lr,
                         torch.optim.SGD(model.parameters(), lr=epsilon), inner_batch=inner_batch)
    torch.manual_seed(5)
    engine.train_step()
    assert relative_error(list(model.parameters()), want) <= TOL
    assert relative_error(before, want) > 1e-4  # the step moved θ, so the comparison can fail


def _order_drawn_with_seed(seed, batch):
    """The random order of each task's support examples that the lower problem draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.rand(batch.support.y.shape).argsort(dim=1)


def test_adam_adaptation_matches_torch_adam():
    """Evaluation adapts with the same inner optimiser: torch's Adam with β1 = 0, task by task."""
    torch.manual_seed(0)
    model = image_model("conv4-strided", 5).double()
    batch = random_episodes(tasks=2, ways=5, shots=1, queries=1, seed=2)
    x = batch.support.x.double()
    learner = Learner(model, get_algorithm("reptile"))
    fast = learner.adapt(dict(model.named_parameters()), x, batch.support.y, steps=4, lr=0.01)
    for b in range(2):
        net = copy.deepcopy(model)
        opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.0, 0.999))
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(net(x[b]), batch.support.y[b]).backward()
            opt.step()
        got = [fast[n][b] for n, _ in net.named_parameters()]
        assert relative_error(got, list(net.parameters())) <= TOL


def test_reptile_with_sgd_inner_loop_is_a_flag():
    assert get_algorithm("reptile", inner_optimizer="sgd").inner_optimizer == "sgd"
    assert get_algorithm("reptile").inner_optimizer == "adam"


def test_reptile_sine_run_end_to_end(tmp_path):
    """Regression targets [B, n, 1] go through the minibatch shuffle; the checkpoint adapts
    with the run's inner optimiser (SGD for the sine preset)."""
    import json

    import bilevel_anil
    from bilevel_anil.cli import main

    out = tmp_path / "reptile-sine"
    assert main(["--preset", "reptile-sine", "--iterations", "300", "--val-every", "150", "--val-tasks", "20",
                 "--test-tasks", "40", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "results.json").read_text())
    k10 = report["test"]["K=10"]
    assert k10["32"]["mean"] < k10["0"]["mean"]  # adaptation lowers the error
    model = bilevel_anil.load(out / "best.pt")
    assert model.learner.algorithm.inner_optimizer == "sgd" and model.inner_steps == 32
