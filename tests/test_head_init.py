"""Where each task's inner loop starts its head (``head_init``): a zero head, or Proto-MAML's
prototype head (w_c = 2μ_c, b_c = −‖μ_c‖² from the support features at θ, differentiably).

The meta-gradient is checked against plain autograd through the same steps with a head
computed independently (``helpers.start_head``), in float64: unrolled to relative L2 ≤ 1e-10
(float32 rounding alone gives 2e-5 here: prototype logits are large), and implicit against a
direct solve to ≤ 1e-8, where the proximal term anchors the head
at its starting point, so the gradient also flows through the anchor."""
import copy

import pytest
import torch

from bilevel_anil.core.algorithms import ALGORITHMS
from bilevel_anil.errors import UsageError
from bilevel_anil.core.learner import Learner, prototype_head
from bilevel_anil.models import MLP, Conv4
from bilevel_anil.problems import HypergradConfig

from helpers import build_engine, random_episodes, reference_meta_gradient, relative_error
from implicit_reference import implicit_reference


@pytest.mark.parametrize("head_init", ["zero", "prototypes"])
@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "foanil"])
def test_unrolled_meta_gradient_matches_autograd(name, head_init, tmp_path):
    torch.manual_seed(0)
    model = Conv4(ways=4, hidden=8, image_size=16).double()
    reference = copy.deepcopy(model)
    batch = random_episodes(tasks=3, ways=4, shots=2, queries=2, shape=(1, 16, 16))
    batch.support.x, batch.query.x = batch.support.x.double(), batch.query.x.double()
    algo = ALGORITHMS[name]
    engine = build_engine(Learner(model, algo, head_init=head_init), batch, 2, 0.3, tmp_path)
    engine.train_step()
    want = reference_meta_gradient(reference, algo, batch, 2, 0.3, head_init=head_init)
    assert relative_error(engine.upper.last_grads, want) <= 1e-10
    learned = reference_meta_gradient(copy.deepcopy(reference), algo, batch, 2, 0.3)
    assert relative_error(learned, want) > 1e-2  # the starting head changes the gradient (the check can fail)


@pytest.mark.parametrize("head_init", ["zero", "prototypes"])
@pytest.mark.parametrize("name", ["imaml", "ianil"])
def test_implicit_meta_gradient_equals_direct_solve(name, head_init, tmp_path):
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=2, image_size=16).double()
    reference = copy.deepcopy(model)
    batch = random_episodes(tasks=2, ways=3, shots=2, queries=2, shape=(1, 16, 16))
    batch.support.x, batch.query.x = batch.support.x.double(), batch.query.x.double()
    algo = ALGORITHMS[name]
    learner = Learner(model, algo, lam=1.0, head_init=head_init)
    unknowns = 2 * sum(p.numel() for n, p in model.named_parameters() if n in learner.adapted_names)
    engine = build_engine(learner, batch, 3, 0.3, tmp_path,  # CG to convergence: more iterations than unknowns
                          hypergrad=HypergradConfig("cg", iterations=unknowns + 20))
    engine.train_step()
    want = implicit_reference(reference, algo, batch, 3, 0.3, 1.0, head_init=head_init)
    assert relative_error(engine.upper.last_grads, want) <= 1e-8


def test_prototype_head_is_the_nearest_centroid_classifier():
    """Logits of the prototype head rank classes by squared Euclidean distance to the class
    means; a class without support examples gets a zero row."""
    torch.manual_seed(0)
    features = torch.randn(2, 9, 5, dtype=torch.float64)
    labels = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 0, 1], [3, 3, 1, 1, 0, 0, 1, 3, 0]])
    weight, bias = prototype_head(features, labels, ways=4)
    queries = torch.randn(2, 7, 5, dtype=torch.float64)
    for b in range(2):
        present = labels[b].unique()
        means = torch.stack([features[b][labels[b] == c].mean(0) for c in present])
        logits = queries[b] @ weight[b].T + bias[b]
        torch.testing.assert_close(logits[:, present], (queries[b] ** 2).sum(1, keepdim=True)
                                   - torch.cdist(queries[b], means) ** 2)
        missing = [c for c in range(4) if c not in present]
        assert all(weight[b, c].abs().sum() == 0 and bias[b, c] == 0 for c in missing)


def test_adapting_zero_steps_with_prototypes_predicts_the_nearest_prototype():
    torch.manual_seed(0)
    model = Conv4(ways=4, hidden=8, image_size=16)
    batch = random_episodes(tasks=2, ways=4, shots=3, queries=2, shape=(1, 16, 16))
    learner = Learner(model, ALGORITHMS["anil"], head_init="prototypes")
    theta = learner.meta_params()
    fast = learner.adapt(theta, batch.support.x, batch.support.y, steps=0, lr=0.1)
    with torch.no_grad():
        got = learner.predictor(theta, batch.query.x)(fast).argmax(-1)
        support, query = model.body_forward(theta, batch.support.x), model.body_forward(theta, batch.query.x)
    for b in range(2):
        means = torch.stack([support[b][batch.support.y[b] == c].mean(0) for c in range(4)])
        assert torch.equal(got[b], torch.cdist(query[b], means).argmin(-1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(algorithm="anil", head_init="prototype"), "unknown head_init='prototype'"),
    (dict(algorithm="reptile", head_init="zero"), "does not fit reptile"),
    (dict(algorithm="pretrain", head_init="zero"), "does not fit pretrain"),
    (dict(algorithm="anil", head_init="prototypes", loss="mse"), "needs classes to form prototypes, and the loss is mse"),
    (dict(algorithm="maml", head_init="zero", adapt=lambda n: n.startswith("body.")), "adapts the head"),
])
def test_head_init_contract_is_checked_when_the_learner_is_built(kwargs, message):
    kwargs = dict(kwargs)
    algorithm = ALGORITHMS[kwargs.pop("algorithm")]
    with pytest.raises(UsageError, match=message):
        Learner(Conv4(ways=4, hidden=8, image_size=16), algorithm, **kwargs)


def test_prototypes_need_a_linear_head_with_a_bias():
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4, bias=False))
    with pytest.raises(UsageError, match="one nn.Linear with a bias"):
        Learner(net, ALGORITHMS["anil"], head_init="prototypes")
    Learner(MLP(), ALGORITHMS["anil"], "mse", head_init="zero")  # a zero head needs no classifier


def test_the_python_api_saves_and_loads_the_head_init(tmp_path):
    """MetaLearner(head_init=...) trains with it, save()/load() keep it, and the loaded learner
    adapts and predicts exactly as the saved one; run.py's checkpoints go through the same load."""
    from bilevel_anil import MetaLearner

    torch.manual_seed(0)
    batch = random_episodes(tasks=2, ways=4, shots=2, queries=2, shape=(1, 16, 16))
    meta = MetaLearner(Conv4(ways=4, hidden=8, image_size=16), "anil", head_init="prototypes", inner_lr=0.1)
    meta.meta_step(batch)
    meta.save(tmp_path / "proto.pt")
    again = MetaLearner.load(tmp_path / "proto.pt")
    assert again.learner.head_init == "prototypes"
    x, y, q = batch.support.x[0], batch.support.y[0], batch.query.x[0]
    torch.testing.assert_close(again.adapt(x, y)(q), meta.adapt(x, y)(q))
    assert not torch.equal(MetaLearner.load(tmp_path / "proto.pt").adapt(x, y, steps=0)(q),
                           MetaLearner(copy.deepcopy(meta.model), "anil").adapt(x, y, steps=0)(q))
    with pytest.raises(UsageError, match="head_init"):
        MetaLearner(Conv4(ways=4, hidden=8, image_size=16), "reptile", head_init="prototypes")
    from bilevel_anil.training import checkpoint
    crafted = checkpoint.read(tmp_path / "proto.pt")
    crafted["learner"]["head_init"] = "evil"
    torch.save(crafted, tmp_path / "crafted.pt")
    with pytest.raises(UsageError, match="names an unknown head_init 'evil': it was not written by this package"):
        MetaLearner.load(tmp_path / "crafted.pt")


def test_darts_with_prototypes_is_lambda_times_the_anchors_pullback(tmp_path):
    """With DARTS the prototype anchor is rebuilt for each evaluation of the inner loss (DARTS
    frees each graph). Its meta-gradient is then exactly λ·J_aᵀ v per task, v = ∇φ L_query(φ_K)
    and a(θ) the anchor (θ for the body, the prototype head): the mixed derivative of the
    quadratic proximal term, ε-independent. Reference: autograd through helpers.start_head
    (float64, ≤ 1e-7, the finite difference's rounding)."""
    from torch.func import functional_call
    import torch.nn.functional as F
    from helpers import start_head

    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=4, image_size=16).double()
    reference = copy.deepcopy(model)
    batch = random_episodes(tasks=2, ways=3, shots=2, queries=2, shape=(1, 16, 16))
    batch.support.x, batch.query.x = batch.support.x.double(), batch.query.x.double()
    lam, tasks = 2.0, 2
    engine = build_engine(Learner(model, ALGORITHMS["imaml"], lam=lam, head_init="prototypes"), batch, 3, 0.1,
                          tmp_path, hypergrad=HypergradConfig("darts"))
    engine.train_step()
    theta = dict(reference.named_parameters())
    total = [torch.zeros_like(p) for p in theta.values()]
    for b in range(tasks):
        sx, sy = batch.support.x[b], batch.support.y[b]
        anchor = {n: p.detach() for n, p in {**theta, **start_head(reference, theta, sx, sy, "prototypes")}.items()}
        phi = {n: p.clone().requires_grad_() for n, p in anchor.items()}
        for _ in range(3):
            loss = F.cross_entropy(functional_call(reference, phi, (sx,)), sy)
            loss = loss + lam / 2 * sum(((phi[n] - anchor[n]) ** 2).sum() for n in phi)
            phi = {n: (p - 0.1 * g).detach().requires_grad_()
                   for (n, p), g in zip(phi.items(), torch.autograd.grad(loss, list(phi.values())))}
        query = F.cross_entropy(functional_call(reference, phi, (batch.query.x[b],)), batch.query.y[b])
        v = dict(zip(phi, torch.autograd.grad(query, list(phi.values()))))
        a = {**theta, **start_head(reference, theta, sx, sy, "prototypes")}
        pulled = torch.autograd.grad(sum((a[n] * v[n]).sum() for n in a), list(theta.values()), allow_unused=True)
        total = [t + (0 if g is None else lam * g / tasks) for t, g in zip(total, pulled)]
    assert relative_error(engine.upper.last_grads, total) <= 1e-7


def test_protonet_meta_gradient_is_the_prototypical_loss():
    """protonet = pretrain with the prototype head: its meta-gradient is the gradient of
    Prototypical Networks' loss, cross-entropy over −‖f(q) − μ_c‖² (Snell et al. 2017), written
    here with torch.cdist (float64, ≤ 1e-10); a learned head gets no gradient."""
    from torch.func import functional_call
    import torch.nn.functional as F
    from bilevel_anil import MetaLearner

    torch.manual_seed(0)
    model = Conv4(ways=4, hidden=8, image_size=16).double()
    reference = copy.deepcopy(model)
    batch = random_episodes(tasks=3, ways=4, shots=2, queries=2, shape=(1, 16, 16))
    batch.support.x, batch.query.x = batch.support.x.double(), batch.query.x.double()
    meta = MetaLearner(model, "protonet")
    assert meta.learner.head_init == "prototypes" and meta.test_inner_steps == 0  # nearest centroid
    got = meta.meta_gradient(batch)
    theta = dict(reference.named_parameters())
    body = {n[len("body."):]: p for n, p in theta.items() if n.startswith("body.")}
    loss = 0.0
    for b in range(3):
        support = functional_call(reference.body, body, (batch.support.x[b],))
        query = functional_call(reference.body, body, (batch.query.x[b],))
        means = torch.stack([support[batch.support.y[b] == c].mean(0) for c in range(4)])
        loss = loss + F.cross_entropy(-torch.cdist(query, means) ** 2, batch.query.y[b]) / 3
    want = dict(zip(body, torch.autograd.grad(loss, list(body.values()))))
    assert relative_error([got["body." + n] for n in want], list(want.values())) <= 1e-10
    assert all(got[n].abs().max() == 0 for n in ("head.weight", "head.bias"))
    assert MetaLearner(Conv4(ways=4, hidden=8, image_size=16), "protonet", test_inner_steps=3).test_inner_steps == 3
