"""The meta-gradient comparison: Betty's methods against the exact implicit gradient.

Set-up: ianil on sine tasks (MLP 1-40-40-1, head of 41 parameters per task), λ = 2, inner SGD
at lr 0.02 for 300 steps from θ, so the strongly convex proximal head problem is solved to
high accuracy; the exact gradient comes from a direct per-task solve.
"""
import copy
import math

import pytest
import torch

from bilevel_anil.core.options import get_algorithm
from bilevel_anil.cli import main
from bilevel_anil.recipes.compare import _compare, engine_gradient, exact_implicit_gradient
from bilevel_anil.data.sine import SineTasks
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import MLP
from bilevel_anil.problems import HypergradConfig

LAM, LR, STEPS = 2.0, 0.02, 300


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model, batch = MLP(), SineTasks(10, 10).sample(4)
    learner = Learner(copy.deepcopy(model), get_algorithm("ianil"), "mse", LAM)
    exact, info = exact_implicit_gradient(learner, batch, STEPS, LR, "direct")
    assert info["inner_grad_norm"] < 1e-4 and info["residual"] < 1e-5  # the inner problem is solved
    return model, batch, exact, info


def error(problem, algo, steps, hypergrad):
    model, batch, exact, _ = problem
    grads, _ = engine_gradient(model, algo, "mse", LAM, batch, steps, LR, hypergrad, "cpu")
    return _compare(grads, exact)[1]


def test_cg_reaches_the_direct_solve_within_20_iterations(problem):
    errors = {k: error(problem, get_algorithm("ianil"), STEPS, HypergradConfig("cg", k)) for k in (1, 5, 20)}
    assert errors[20] < 1e-3
    assert errors[1] > 10 * errors[20]  # so the bound above is not met trivially


def test_direct_solve_agrees_with_cg_to_convergence(problem):
    model, batch, exact, _ = problem
    learner = Learner(copy.deepcopy(model), get_algorithm("ianil"), "mse", LAM)
    by_cg, info = exact_implicit_gradient(learner, batch, STEPS, LR, "cg", tol=1e-7)
    assert _compare(by_cg, exact)[1] < 1e-5


def test_unrolled_gradient_approaches_the_implicit_one_as_k_grows(problem):
    unrolled = get_algorithm("ianil", grad="unrolled")
    errors = [error(problem, unrolled, k, None) for k in (1, 10, 100, STEPS)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3


def test_neumann_error_is_finite_and_shrinks_with_iterations(problem):
    alpha = 1.0 / problem[3]["largest_eigenvalue"]
    errors = [error(problem, get_algorithm("ianil"), STEPS, HypergradConfig("neumann", k, alpha)) for k in (1, 5, 20)]
    assert all(math.isfinite(e) for e in errors)
    assert errors[0] > errors[1] > errors[2]


def test_darts_error_is_finite_and_its_finite_difference_converges(tmp_path):
    """Betty's DARTS approximates H⁻¹ by I: as its radius shrinks it converges to that limit
    (not to the exact gradient, which it stays a finite distance from). A cross-entropy head
    (not quadratic, so the finite difference has an error to shrink) on a small Conv4."""
    from bilevel_anil.models import Conv4

    from helpers import random_episodes

    torch.manual_seed(0)
    model, batch = Conv4(ways=3, hidden=8, image_size=16), random_episodes(3, 3, 2, 2, shape=(1, 16, 16))
    algo = get_algorithm("ianil")
    learner = Learner(copy.deepcopy(model), algo, "cross_entropy", LAM)
    exact, _ = exact_implicit_gradient(learner, batch, 100, 0.1, "direct")
    limit, _ = exact_implicit_gradient(learner, batch, 100, 0.1, "identity")
    to_limit, to_exact = [], []
    for radius in (3.0, 0.3):
        grads, _ = engine_gradient(model, algo, "cross_entropy", LAM, batch, 100, 0.1,
                                   HypergradConfig("darts", darts_alpha=radius), "cpu")
        to_limit.append(_compare(grads, limit)[1])
        to_exact.append(_compare(grads, exact)[1])
    assert to_limit[1] < to_limit[0] / 10, to_limit  # central differences: error O(radius²)
    assert all(math.isfinite(e) and e > 1e-2 for e in to_exact), to_exact


def test_command_writes_table_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare-grads", "--dataset", "sine", "--shots", "10", "--queries", "10", "--tasks", "2",
                 "--inner-lr", str(LR), "--inner-steps", "50", "--ks", "1,5", "--unroll", "1,50",
                 "--darts-radii", "0.1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "direct solve per task" in printed and "betty-cg" in printed
    rows = (out / "comparison.csv").read_text().splitlines()
    assert rows[0] == "method,knob,value,cosine,rel_error,seconds,peak_mib"
    assert len(rows) == 1 + 1 + 2 * 3 + 1 + 2  # first order, 2 k for 3 methods, 1 radius, 2 K
    assert (out / "comparison.png").stat().st_size > 10_000


def test_bad_sweep_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare-grads", "--ks", "1,x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "comma-separated integers" in err[0]
