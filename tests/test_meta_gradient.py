"""One outer step through Betty equals plain autograd through the same inner steps.

Tolerance: relative L2 error ≤ 1e-5 over all meta-parameters, both sides in float32.
"""
import copy

import pytest
import torch

from bilevel_anil.core.algorithms import ALGORITHMS
from bilevel_anil.core.learner import Learner
from bilevel_anil.data.sine import SineTasks
from bilevel_anil.models import MLP, Conv4

from helpers import build_engine, random_episodes, reference_meta_gradient, relative_error

TOL = 1e-5
UNROLLED = sorted(n for n, a in ALGORITHMS.items()
                  if a.grad == "unrolled" and not a.pretrain and a.update == "gradient")  # maml, fomaml, anil, foanil


@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("name", UNROLLED)
def test_betty_outer_step_matches_autograd_reference(name, inner_steps, tmp_path):
    torch.manual_seed(0)
    algorithm = ALGORITHMS[name]
    model = Conv4(ways=5, hidden=16)  # BatchNorm in every block
    reference_model = copy.deepcopy(model)
    batch = random_episodes(tasks=4, ways=5, shots=1, queries=2)
    engine = build_engine(Learner(model, algorithm), batch, inner_steps, inner_lr=0.4, tmp=tmp_path)
    engine.train_step()
    got = engine.upper.last_grads
    want = reference_meta_gradient(reference_model, algorithm, batch, inner_steps, inner_lr=0.4)
    assert relative_error(got, want) <= TOL


@pytest.mark.parametrize("name", UNROLLED)
def test_running_batch_norm_mode_matches_autograd_reference(name, tmp_path):
    """With running statistics the training forward still normalises with batch statistics:
    the meta-gradient is the reference's (an ordinary BatchNorm2d that tracks running stats)."""
    torch.manual_seed(1)
    algorithm = ALGORITHMS[name]
    model = Conv4(ways=5, hidden=16, bn="running")
    reference_model = copy.deepcopy(model)
    batch = random_episodes(tasks=3, ways=5, shots=2, queries=2)
    engine = build_engine(Learner(model, algorithm), batch, 2, inner_lr=0.4, tmp=tmp_path)
    engine.train_step()
    want = reference_meta_gradient(reference_model, algorithm, batch, 2, inner_lr=0.4)
    assert relative_error(engine.upper.last_grads, want) <= TOL
    assert not torch.equal(model.body[0].bn.running_mean, torch.zeros(16))  # statistics were accumulated


@pytest.mark.parametrize("inner_steps", [1, 5])
@pytest.mark.parametrize("name", UNROLLED)
def test_sine_regression_meta_gradient_matches_autograd_reference(name, inner_steps, tmp_path):
    """The mean-squared-error path (MLP 1-40-40-1, sine tasks) against the same reference."""
    torch.manual_seed(2)
    algorithm = ALGORITHMS[name]
    model = MLP()
    reference_model = copy.deepcopy(model)
    batch = SineTasks(shots=5, queries=10).sample(6)
    engine = build_engine(Learner(model, algorithm, "mse"), batch, inner_steps, inner_lr=0.01, tmp=tmp_path)
    engine.train_step()
    want = reference_meta_gradient(reference_model, algorithm, batch, inner_steps, inner_lr=0.01, loss="mse")
    assert relative_error(engine.upper.last_grads, want) <= TOL
    assert engine.upper.last_stats["loss"] > 0


@pytest.mark.parametrize("name", ["anil", "maml"])
def test_second_order_terms_are_present(name, tmp_path):
    """The exact meta-gradient differs from the first-order one (so the test above can fail)."""
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=16)
    batch = random_episodes(tasks=4, ways=5, shots=1, queries=2)
    exact = reference_meta_gradient(copy.deepcopy(model), ALGORITHMS[name], batch, 2, 0.4)
    first = reference_meta_gradient(copy.deepcopy(model), ALGORITHMS["fo" + name], batch, 2, 0.4)
    assert relative_error(first, exact) > 1e-3


def test_anil_leaves_body_out_of_the_inner_loop(tmp_path):
    """ANIL's fast weights are the head only; MAML's are every parameter."""
    model = Conv4(ways=5, hidden=8)
    assert Learner(model, ALGORITHMS["anil"]).adapted_names == ["head.weight", "head.bias"]
    assert Learner(model, ALGORITHMS["maml"]).adapted_names == [n for n, _ in model.named_parameters()]


def test_meta_parameters_move_by_the_optimizer(tmp_path):
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8)
    before = [p.detach().clone() for p in model.parameters()]
    engine = build_engine(Learner(model, ALGORITHMS["anil"]), random_episodes(2, 5, 1, 1), 1, 0.4, tmp_path)
    engine.train_step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert engine.lower.fast_params == {}  # the finished inner loop's graph is released


@pytest.mark.parametrize("network", ["conv4", "mlp"])
def test_pretrain_meta_gradient_is_the_query_loss_gradient_at_theta(network, tmp_path):
    """pretrain (the MAML paper's baseline) trains on the query loss at θ itself: its step's
    gradient is the reference with no inner steps, whatever the (test-time) inner lr."""
    torch.manual_seed(3)
    if network == "conv4":
        model, loss, batch = Conv4(ways=5, hidden=16), "cross_entropy", random_episodes(3, 5, 1, 2)
    else:
        model, loss, batch = MLP(), "mse", SineTasks(shots=5, queries=10).sample(4)
    reference_model = copy.deepcopy(model)
    engine = build_engine(Learner(model, ALGORITHMS["pretrain"], loss), batch, 1, inner_lr=0.4, tmp=tmp_path)
    engine.train_step()
    want = reference_meta_gradient(reference_model, ALGORITHMS["pretrain"], batch, 0, inner_lr=0.4, loss=loss)
    assert relative_error(engine.upper.last_grads, want) <= TOL
    adapted = reference_meta_gradient(copy.deepcopy(reference_model), ALGORITHMS["fomaml"], batch, 1, 0.4, loss=loss)
    assert relative_error(adapted, want) > 1e-2  # one real inner step would give a different gradient
