"""iMAML through Betty's ImplicitProblem: the implicit meta-gradient against a direct solve,
and the one-switch swap to the unrolled meta-gradient of the same inner objective.

Tolerances: float64 throughout, relative L2 error ≤ 1e-8 against the exact solve when CG
runs to convergence (the CG iteration count exceeds the system's dimension).
"""
import copy

import pytest
import torch

from bilevel_anil.core.algorithms import ALGORITHMS
from bilevel_anil.core.options import get_algorithm
from bilevel_anil.data.sine import SineTasks
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import MLP, Conv4
from bilevel_anil.problems import HypergradConfig, ImplicitAdapt, UnrolledAdapt

from helpers import build_engine, random_episodes, reference_meta_gradient, relative_error
from implicit_reference import implicit_reference


def _double(batch):
    batch.support.x, batch.query.x = batch.support.x.double(), batch.query.x.double()
    if batch.support.y.is_floating_point():
        batch.support.y, batch.query.y = batch.support.y.double(), batch.query.y.double()
    return batch


def _sine_case(name, tmp_path, **hypergrad):
    """An MLP, 3 sine tasks and an engine with CG run to convergence (float64); the model's
    untouched copy for the reference."""
    torch.manual_seed(0)
    model = MLP(hidden=(8, 8)).double()
    reference = copy.deepcopy(model)
    batch = _double(SineTasks(5, 10).sample(3))
    algo = ALGORITHMS[name]
    n_phi = sum(p.numel() for n, p in model.named_parameters() if n in Learner(model, algo).adapted_names) * 3
    engine = build_engine(Learner(model, algo, "mse", lam=2.0), batch, 4, 0.05, tmp_path,
                          hypergrad=HypergradConfig("cg", iterations=n_phi + 10, **hypergrad))
    return engine, reference, batch, algo


@pytest.mark.parametrize("damping, lam_damping", [(0.0, 0.0), (1.0, 10.0)])
@pytest.mark.parametrize("name", ["imaml", "ianil"])
def test_betty_cg_hypergradient_equals_direct_solve_on_sine(name, damping, lam_damping, tmp_path):
    """CG run to convergence equals a direct solve (float64, ≤ 1e-8): of the exact implicit
    system, and (--cg-damping 1 --cg-lam-damping 10) of the iMAML authors' damped system
    ((1 + d)·I + H_L/(λ + c)) x = ∇L, which gives another gradient (so the check can fail)."""
    engine, reference, batch, algo = _sine_case(name, tmp_path, damping=damping, lam_damping=lam_damping)
    assert isinstance(engine.lower, ImplicitAdapt)
    engine.train_step()
    want = implicit_reference(copy.deepcopy(reference), algo, batch, 4, 0.05, 2.0, loss="mse", damping=damping,
                              lam_damping=lam_damping)
    assert relative_error(engine.upper.last_grads, want) <= 1e-8
    if damping:
        assert relative_error(implicit_reference(reference, algo, batch, 4, 0.05, 2.0, loss="mse"), want) > 1e-2


@pytest.mark.parametrize("name", ["imaml", "ianil"])
def test_pullback_inner_loop_equals_the_authors_steps_then_the_direct_solve(name, tmp_path):
    """--inner-proximal pullback: steps on the support loss alone, one step on the proximal
    term, then the same implicit gradient (float64, ≤ 1e-8 against the direct solve at that
    φ); it differs from the every-step loop's gradient, so the check can fail."""
    engine, reference, batch, algo = _sine_case(name, tmp_path)
    engine.lower.pullback = True
    engine.train_step()
    want = implicit_reference(copy.deepcopy(reference), algo, batch, 4, 0.05, 2.0, loss="mse", pullback=True)
    assert relative_error(engine.upper.last_grads, want) <= 1e-8
    every = implicit_reference(reference, algo, batch, 4, 0.05, 2.0, loss="mse")
    assert relative_error(every, want) > 1e-3


def test_betty_cg_hypergradient_equals_direct_solve_with_conv_body(tmp_path):
    """ianil on a Conv4 (with BatchNorm): θ_body enters both the query loss and the inner objective."""
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=4, image_size=16).double()
    reference = copy.deepcopy(model)
    batch = _double(random_episodes(tasks=2, ways=3, shots=2, queries=2, shape=(1, 16, 16)))
    algo = ALGORITHMS["ianil"]
    engine = build_engine(Learner(model, algo, lam=1.0), batch, 3, 0.3, tmp_path,
                          hypergrad=HypergradConfig("cg", iterations=40))
    engine.train_step()
    want = implicit_reference(reference, algo, batch, 3, 0.3, 1.0)
    assert relative_error(engine.upper.last_grads, want) <= 1e-8


@pytest.mark.parametrize("pullback", [False, True])
@pytest.mark.parametrize("name", ["imaml", "ianil"])
def test_grad_switch_swaps_only_the_lower_problem(name, pullback, tmp_path):
    """--grad unrolled on the same proximal inner loop (every step, or the authors' pull-back)
    equals plain autograd through the steps (float32, ≤ 1e-5)."""
    torch.manual_seed(0)
    model = MLP()
    reference = copy.deepcopy(model)
    batch = SineTasks(5, 10).sample(4)
    algo = get_algorithm(name, grad="unrolled")
    learner = Learner(model, algo, "mse", lam=2.0)
    engine = build_engine(learner, batch, 3, 0.05, tmp_path)
    assert isinstance(engine.lower, UnrolledAdapt)
    engine.lower.pullback = pullback
    engine.train_step()
    want = reference_meta_gradient(reference, algo, batch, 3, 0.05, loss="mse", lam=2.0, pullback=pullback)
    assert relative_error(engine.upper.last_grads, want) <= 1e-5
    other = reference_meta_gradient(copy.deepcopy(reference), algo, batch, 3, 0.05, loss="mse", lam=2.0,
                                    pullback=not pullback)
    assert relative_error(other, want) > 1e-3


def test_proximal_term_uses_the_papers_scale():
    """(λ/2)·‖φ − θ‖², not Betty's example's λ·Σ(φ − θ)²."""
    model = MLP(hidden=(4,))
    learner = Learner(model, ALGORITHMS["imaml"], "mse", lam=3.0)
    theta = dict(model.named_parameters())
    fast = {n: p.detach().unsqueeze(0) + 1.0 for n, p in theta.items()}  # every entry moved by 1
    zero = lambda f: torch.zeros(1, 1, 1)  # noqa: E731 - no support loss
    got = learner.inner_loss(zero, fast, torch.zeros(1, 1, 1), theta).item()
    count = sum(p.numel() for p in theta.values())
    assert got == pytest.approx(0.5 * 3.0 * count)


def test_cg_runs_each_task_as_its_own_solve():
    """Batched CG equals B separate textbook CG runs (same iteration count), and converges
    to the direct solve (float64, relative error ≤ 1e-10 after n iterations)."""
    from bilevel_anil.problems.hypergradients import cg_solve

    torch.manual_seed(0)
    n, tasks = 6, 3
    q = torch.randn(tasks, n, n, dtype=torch.float64)
    a = q @ q.transpose(1, 2) + torch.diag_embed(torch.rand(tasks, n, dtype=torch.float64) * torch.tensor([[0.1], [1.0], [10.0]], dtype=torch.float64))
    b = torch.randn(tasks, n, dtype=torch.float64)
    matvec = lambda v: [torch.einsum("bij,bj->bi", a, v[0])]  # noqa: E731

    def one_cg(m, rhs, iterations):
        x, r = torch.zeros_like(rhs), rhs.clone()
        p, rs = r.clone(), r @ r
        for _ in range(iterations):
            ap = m @ p
            step = rs / (p @ ap)
            x, r = x + step * p, r - step * ap
            p, rs = r + (r @ r) / rs * p, r @ r
        return x

    three = cg_solve(matvec, [b], 3)[0]
    for t in range(tasks):
        torch.testing.assert_close(three[t], one_cg(a[t], b[t], 3), rtol=1e-12, atol=1e-12)
    full = cg_solve(matvec, [b], n)[0]
    direct = torch.linalg.solve(a, b)
    assert ((full - direct).norm() / direct.norm()).item() <= 1e-10
