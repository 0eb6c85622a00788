"""The Python API as a user meets it: their own network with parts named anything, their own
task family and dataset, through ``bilevel_anil``'s public names only (plus the tests'
independent autograd references)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import bilevel_anil
from bilevel_anil import MetaLearner, TaskBatch, dataset_tasks, function_tasks
from bilevel_anil.training.schema import read_run
from helpers import reference_meta_gradient, relative_error
from implicit_reference import implicit_reference


class TrunkClassifier(nn.Module):
    """A user's network: a trunk and a classifier, no 'body'/'head' anywhere."""

    def __init__(self, ways: int = 3, width: int = 8):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.Flatten())
        self.classifier = nn.Linear(width * 4 * 4, ways)

    def forward(self, x):
        return self.classifier(self.trunk(x))


def image_batch(tasks=4, ways=3, shots=2, queries=3, seed=0, dtype=torch.float64) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    labels = lambda k: torch.arange(ways).repeat_interleave(k).repeat(tasks, 1)  # noqa: E731
    return TaskBatch.of(torch.randn(tasks, ways * shots, 1, 8, 8, generator=g, dtype=dtype), labels(shots),
                        torch.randn(tasks, ways * queries, 1, 8, 8, generator=g, dtype=dtype), labels(queries))


def model(seed=0) -> TrunkClassifier:
    torch.manual_seed(seed)
    return TrunkClassifier().double()


def sine_task(g: torch.Generator):
    amplitude = 0.1 + 4.9 * torch.rand(1, generator=g)
    phase = 3.14159 * torch.rand(1, generator=g)
    x = 10 * torch.rand(20, 1, generator=g) - 5
    y = amplitude * torch.sin(x + phase)
    return x[:10], y[:10], x[10:], y[10:]


@pytest.mark.parametrize("algorithm", ["maml", "anil", "fomaml", "foanil"])
def test_meta_gradient_of_a_network_named_anything_equals_plain_autograd(algorithm):
    """float64, relative error ≤ 1e-10; the same module under other names must not change it
    (it did: a 1.19 relative error when the body was not called 'body')."""
    batch, net = image_batch(), model()
    learner = MetaLearner(net, algorithm, inner_lr=0.1, inner_steps=2)
    got = learner.meta_gradient(batch)
    want = reference_meta_gradient(net, learner.algorithm, batch, 2, 0.1, adapted=learner.learner.adapted_names)
    assert relative_error(list(got.values()), want) < 1e-10
    assert set(got) == {n for n, _ in net.named_parameters()}
    if algorithm.endswith("anil"):
        assert learner.learner.adapted_names == ["classifier.weight", "classifier.bias"]


def test_meta_gradient_float32_within_1e_5_of_autograd():
    batch, net = image_batch(dtype=torch.float32), model().float()
    learner = MetaLearner(net, "maml", inner_lr=0.1, inner_steps=2)
    got = learner.meta_gradient(batch)
    want = reference_meta_gradient(net, learner.algorithm, batch, 2, 0.1)
    assert relative_error(list(got.values()), want) < 1e-5


def test_implicit_and_unrolled_are_one_argument_on_the_same_network():
    """imaml's implicit meta-gradient (CG run to convergence) equals a direct solve of the
    inner Hessian (float64, ≤ 1e-10; λ = 10 keeps that Hessian positive definite for this
    BatchNorm network, whose support-loss Hessian has eigenvalues down to about −4.2);
    grad='unrolled' on the same network gives the unrolled one, which differs."""
    batch, net = image_batch(tasks=2), model()
    implicit = MetaLearner(net, "imaml", lam=10.0, inner_lr=0.01, inner_steps=3, hypergrad_iterations=300)
    got = implicit.meta_gradient(batch)
    want = implicit_reference(net, implicit.algorithm, batch, 3, 0.01, 10.0, names=implicit.learner.adapted_names)
    assert relative_error(list(got.values()), want) < 1e-10
    unrolled = MetaLearner(net, "imaml", grad="unrolled", lam=10.0, inner_lr=0.01, inner_steps=3).meta_gradient(batch)
    assert relative_error(list(unrolled.values()), want) > 1e-4
    with pytest.raises(ValueError, match="implicit.*use algorithm 'imaml'"):
        MetaLearner(net, "maml", grad="implicit")


def test_head_given_by_name_module_or_predicate_and_wrong_heads_are_one_line():
    net = model()
    assert MetaLearner(net, "anil", head="classifier").learner.adapted_names == ["classifier.weight", "classifier.bias"]
    assert MetaLearner(net, "anil", head=net.classifier).learner.adapted_names[0] == "classifier.weight"
    by_predicate = MetaLearner(net, "anil", head=lambda n: n.startswith(("classifier", "trunk.1")))
    assert by_predicate.learner.adapted_names == ["trunk.1.weight", "trunk.1.bias", "classifier.weight",
                                                  "classifier.bias"]
    with pytest.raises(ValueError, match=r"head='clasifier': TrunkClassifier has no such submodule \(its children: "
                                         r"trunk, classifier\)"):
        MetaLearner(net, "anil", head="clasifier")
    with pytest.raises(ValueError, match="the head of TrunkClassifier .trunk.2. has no parameters"):
        MetaLearner(net, "anil", head="trunk.2")
    with pytest.raises(ValueError, match="cannot tell which part of Sequential is its head"):
        MetaLearner(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), "anil")
    MetaLearner(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), "maml")  # MAML needs no head
    with pytest.raises(ValueError, match="unknown algorithm 'mamal'"):
        MetaLearner(net, "mamal")
    with pytest.raises(ValueError, match="inner_lr must be a positive number"):
        MetaLearner(net, "maml", inner_lr=float("nan"))


def test_a_module_that_cannot_run_per_task_says_so_on_the_first_batch():
    class Stateful(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 1)
            self.register_buffer("calls", torch.zeros(1))

        def forward(self, x):
            self.calls.add_(x.detach().sum())  # a running statistic updated in place
            return self.fc(x)

    learner = MetaLearner(Stateful(), "maml", loss="mse")
    with pytest.raises(ValueError, match="Stateful failed on the first batch, run one task at a time under torch.func.vmap"):
        learner.meta_step(function_tasks(sine_task, seed=0).sample(2))


@pytest.mark.parametrize("algorithm", ["maml", "anil", "imaml", "reptile"])
def test_a_custom_network_trains_on_a_users_regression_family(algorithm, tmp_path):
    """Each algorithm lowers the query loss of a 1-64-64-1 MLP named by the user on sine tasks."""
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("hidden", nn.Sequential(nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU()))
    net.add_module("out", nn.Linear(64, 1))
    settings = {"maml": {}, "anil": {}, "imaml": {"lam": 10.0, "inner_steps": 5, "meta_lr": 0.01},
                "reptile": {"inner_steps": 5, "meta_lr": 0.1}}[algorithm]
    learner = MetaLearner(net, algorithm, loss="mse", inner_lr=0.01, meta_lr=settings.pop("meta_lr", 0.003),
                          **settings)
    val = function_tasks(sine_task, seed=1).sample(50)
    before = learner.evaluate(val, steps=[1])[1].mean
    result = learner.fit(function_tasks(sine_task, seed=0), steps=60, meta_batch=10, validation=val, val_every=20,
                         out=tmp_path / algorithm)
    after = learner.evaluate(val, steps=[1])[1].mean
    assert result.steps_done == 60 and after < 0.8 * before, (before, after)
    assert (tmp_path / algorithm / "best.pt").is_file() and (tmp_path / algorithm / "metrics.csv").is_file()


def test_fit_save_load_round_trip_with_the_users_module(tmp_path):
    net = model().float()
    batch = image_batch(dtype=torch.float32)
    learner = MetaLearner(net, "anil", head="classifier", inner_lr=0.2, inner_steps=3)
    learner.meta_step(batch)
    learner.save(tmp_path / "learner.pt")
    with pytest.raises(ValueError, match=r"holds a network of the user's \(test_api.TrunkClassifier\): pass model="):
        MetaLearner.load(tmp_path / "learner.pt")
    with pytest.raises(ValueError, match="its weights do not fit the TrunkClassifier given"):
        MetaLearner.load(tmp_path / "learner.pt", model=TrunkClassifier(ways=5))
    again = MetaLearner.load(tmp_path / "learner.pt", model=TrunkClassifier())
    assert again.algorithm.name == "anil" and again.learner.adapted_names == learner.learner.adapted_names
    x, y, q = batch.support.x[0], batch.support.y[0], batch.query.x[0]
    torch.testing.assert_close(again.adapt(x, y)(q), learner.adapt(x, y)(q), rtol=0, atol=0)
    assert again.steps_taken == 1


def test_adapt_takes_one_task_or_a_batch_and_inductive_batchnorm_does_not_depend_on_the_query_batch():
    net = model().float()
    batch = image_batch(dtype=torch.float32)
    learner = MetaLearner(net, "maml", inner_lr=0.1, inner_steps=2)
    one = learner.adapt(batch.support.x[1], batch.support.y[1])(batch.query.x[1])
    many = learner.adapt(batch.support.x, batch.support.y)(batch.query.x)
    torch.testing.assert_close(one, many[1], rtol=1e-5, atol=1e-5)
    adapted = learner.adapt(batch.support.x[0], batch.support.y[0], bn="inductive")
    together = adapted(batch.query.x[0])
    alone = torch.cat([adapted(batch.query.x[0][i:i + 1]) for i in range(batch.query.x.shape[1])])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    transductive = learner.adapt(batch.support.x[0], batch.support.y[0])
    alone_t = torch.cat([transductive(batch.query.x[0][i:i + 1]) for i in range(batch.query.x.shape[1])])
    assert not torch.allclose(transductive(batch.query.x[0]), alone_t, atol=1e-3)  # the stated difference
    with pytest.raises(ValueError, match="do not match the support inputs"):
        adapted(torch.zeros(3, 1, 9, 9))


def test_dataset_tasks_from_a_map_style_dataset_are_reproducible_from_a_seed():
    data = TensorDataset(torch.randn(80, 1, 8, 8), torch.arange(8).repeat_interleave(10))
    a = dataset_tasks(data, ways=3, shots=2, queries=3, seed=5).sample(4)
    b = dataset_tasks(data, ways=3, shots=2, queries=3, seed=5).sample(4)
    assert torch.equal(a.support.x, b.support.x) and torch.equal(a.query.y, b.query.y)
    learner = MetaLearner(TrunkClassifier(), "anil", inner_lr=0.5)
    assert learner.meta_step(a)["loss"] > 0
    with pytest.raises(ValueError, match="need 12 images per class, but class 0 of the dataset's split has 10"):
        dataset_tasks(data, ways=3, shots=2, queries=10)


def test_import_loads_neither_betty_nor_learn2learn():
    import subprocess
    import sys
    code = ("import sys, bilevel_anil; bilevel_anil.MetaLearner; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'betty', 'learn2learn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "MetaLearner" in dir(bilevel_anil) and bilevel_anil.__all__


def test_importing_the_betty_subpackages_changes_nothing_in_betty():
    """The hypergradient type and the logger level are set when a learner's problems and engine
    are built, not when the modules are imported."""
    import subprocess
    import sys
    code = ("import logging, betty.hypergradient as h; from betty.logging.logger_base import get_logger; "
            "level = get_logger().level; import bilevel_anil.problems, bilevel_anil.engines, bilevel_anil.envs; "
            "print('cg_exact' in h.jvp_fn_mapping, get_logger().level == level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_fit_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path):
    """kill -9 just after last.pt, then fit(resume=True): the same θ as a run never killed. The
    generator of a seeded sampler is part of the checkpoint (it used to restart from its seed)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(f"""
import sys, torch
from torch import nn
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_api import sine_task
from bilevel_anil import MetaLearner, function_tasks
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.01, meta_lr=0.01)
learner.fit(function_tasks(sine_task, seed=0), steps=6, meta_batch=4, val_every=2, out=sys.argv[1],
            resume=len(sys.argv) > 2)
torch.save(net.state_dict(), sys.argv[1] + "/final.pt")
""")
    env = {**os.environ, "BILEVEL_ANIL_TEST_KILL_AFTER_CHECKPOINT": "2"}
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "a")], env=env, capture_output=True)
    assert killed.returncode == -9 and (tmp_path / "a" / "last.pt").is_file()
    for args in ([str(tmp_path / "a"), "resume"], [str(tmp_path / "b")]):
        done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "final.pt")
    b = torch.load(tmp_path / "b" / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_callbacks_see_every_step_and_can_stop_it(tmp_path):
    import csv

    from bilevel_anil import EarlyStopping, StepInfo

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
    learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.01, meta_lr=0.01)
    validation = function_tasks(sine_task, seed=1).sample(4)
    seen: list[StepInfo] = []
    stop_at = lambda info: info.step == 3  # noqa: E731  (not a validation step: val_every=5)
    result = learner.fit(function_tasks(sine_task, seed=0), steps=10, meta_batch=2, validation=validation,
                         val_every=5, out=tmp_path / "run", callbacks=[seen.append, stop_at])
    assert [i.step for i in seen] == [1, 2, 3] and result.steps_done == 3
    assert all(i.val_score is None and math.isfinite(i.train_loss) and not i.higher_is_better for i in seen)
    # the stop validated and checkpointed the step it happened at
    assert result.best["step"] == 3 and checkpoint_step(tmp_path / "run" / "last.pt") == 3
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[-1]["val_score"] != ""
    # early stopping on a validation score that cannot improve: a learning rate of 0 keeps θ
    frozen = MetaLearner(nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1)), "maml", loss="mse",
                         inner_lr=0.01, meta_lr=1e-30)
    stopped = frozen.fit(function_tasks(sine_task, seed=0), steps=50, meta_batch=2, validation=validation,
                         val_every=2, callbacks=[EarlyStopping(patience=3, min_delta=1e-6)])
    assert stopped.steps_done == 8  # validations at 2 (best), 4, 6, 8: three without improvement
    with pytest.raises(ValueError, match="callbacks must be callables taking a StepInfo, got int"):
        learner.fit(function_tasks(sine_task), steps=1, callbacks=[3])
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        EarlyStopping(patience=0)


def checkpoint_step(path) -> int:

    return read_run(path).step


def test_load_and_the_learner_agree_and_running_statistics_stay_unchanged(tmp_path):
    """bilevel_anil.load is MetaLearner.load plus the data set's transform: the same
    predictions; the inner optimiser is restored (it used to fall back to the algorithm's);
    adapting Conv4 with BatchNorm running statistics uses them without updating them (it used
    to adapt in training mode, updating them)."""
    from bilevel_anil.models import image_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    learner = MetaLearner(net, "reptile", inner_optimizer="sgd", inner_lr=0.1, inner_steps=2)
    batch = image_batch(dtype=torch.float32)
    learner.meta_step(batch)
    learner.save(tmp_path / "r.pt")
    fresh = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))  # noqa: E731
    assert MetaLearner.load(tmp_path / "r.pt", model=fresh()).algorithm.inner_optimizer == "sgd"
    model = bilevel_anil.load(tmp_path / "r.pt", model=fresh())
    x, y, q = batch.support.x[0], batch.support.y[0], batch.query.x[0]
    torch.testing.assert_close(model.adapt_and_predict(x, y, q), learner.adapt(x, y)(q), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"support labels must be integers 0..2 for the cross-entropy loss \(the head "
                                         r"has 3 outputs\), got torch.int64 values from 0 to 3"):
        model.adapt_and_predict(x, torch.tensor([0, 1, 2, 3, 0, 1]), q)
    with pytest.raises(ValueError, match="inner_optimizer must be one of sgd, adam, not 'rmsprop'"):
        MetaLearner(fresh(), "maml", inner_optimizer="rmsprop")

    conv = image_model("conv4", 3, image_size=16, bn="running")
    running = MetaLearner(conv, "maml", inner_lr=0.1)
    images = TaskBatch.of(*(t.expand(-1, -1, 1, 16, 16).contiguous() if t.dim() == 5 else t
                            for t in (batch.support.x[:, :, :, :1, :1], batch.support.y,
                                      batch.query.x[:, :, :, :1, :1], batch.query.y)))
    running.meta_step(images)
    stats = conv.body[0].bn.running_mean.clone()
    adapted = running.adapt(images.support.x[0], images.support.y[0])
    together = adapted(images.query.x[0])
    alone = torch.cat([adapted(images.query.x[0][i:i + 1]) for i in range(images.query.x.shape[1])])
    assert torch.equal(conv.body[0].bn.running_mean, stats) and conv.training  # unchanged, mode restored
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)  # running statistics: inductive


def test_fit_schedule_and_a_resume_that_does_not_match(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
    learner = MetaLearner(net, "reptile", loss="mse", inner_lr=0.01, meta_lr=0.5)
    anneal = lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / 4))  # noqa: E731
    learner.fit(function_tasks(sine_task, seed=0), steps=4, meta_batch=2, out=tmp_path / "run", schedule=anneal)
    assert learner.optimizer.param_groups[0]["lr"] == 0.0  # annealed to 0 after 4 steps (Reptile's schedule)
    other = MetaLearner(nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1)), "reptile", loss="mse",
                        inner_lr=0.02, meta_lr=0.5)
    with pytest.raises(ValueError, match=r"resume=True: the run in .* was trained with inner_lr 0.01, not 0.02: build the "
                                         "learner as it was"):
        other.fit(function_tasks(sine_task, seed=0), steps=6, meta_batch=2, out=tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="log must be 'csv' or 'tensorboard', not 'wandb'"):
        learner.fit(function_tasks(sine_task), steps=1, log="wandb")
    with pytest.raises(ValueError, match="schedule must be a function optimizer -> lr scheduler"):
        learner.fit(function_tasks(sine_task), steps=1, schedule=0.5)



def test_a_checkpoint_naming_an_unknown_algorithm_is_one_line(tmp_path):
    net = model().float()
    learner = MetaLearner(net, "anil", head="classifier")
    learner.save(tmp_path / "a.pt")
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    torch.save({**state, "learner": {**state["learner"], "algorithm": "evil", "first_order": True}}, tmp_path / "b.pt")
    for load in (lambda: MetaLearner.load(tmp_path / "b.pt", model=TrunkClassifier()),
                 lambda: bilevel_anil.load(tmp_path / "b.pt", model=TrunkClassifier())):
        with pytest.raises(ValueError, match="names an unknown algorithm 'evil': it was not written by this package"):
            load()


def test_more_hostile_api_calls_are_one_line_each(tmp_path):
    from bilevel_anil.core.algorithms import ALGORITHMS
    from bilevel_anil.core.solvers import HypergradConfig

    mlp = lambda: nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))  # noqa: E731
    learner = MetaLearner(mlp(), "maml", loss="mse")
    cases = [
        (lambda: learner.fit(function_tasks(sine_task), 2, callbacks=5), "callbacks must be a list of callables"),
        (lambda: MetaLearner(mlp(), "imaml", loss="mse", hypergrad=HypergradConfig("magic")),
         "unknown hypergrad method 'magic'"),
        (lambda: MetaLearner(mlp(), "imaml", loss="mse", hypergrad=HypergradConfig("neumann", alpha=-1.0)),
         "hypergrad.alpha must be a positive number"),
        (lambda: MetaLearner(mlp(), ALGORITHMS["maml"], adapt="head", loss="mse"), "this Algorithm is already resolved"),
        (lambda: MetaLearner(mlp(), "maml", loss="mse", inner_proximal="pullback"),
         "inner_proximal applies to imaml/ianil"),
        (lambda: (learner.save(tmp_path / "m.pt"), bilevel_anil.load(tmp_path / "m.pt", model=nn.Linear(1, 1))),
         "the network given does not match the saved learner"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
