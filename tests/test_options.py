"""One set of option rules (``bilevel_anil.core.options``) for the Python API and the command
line, and the default head found by running the network.

Each rule case is tried both ways: ``MetaLearner(...)`` must raise the rule's one line naming
the Python argument, and ``run.py`` must exit 2 with the same line naming the flag."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bilevel_anil import MetaLearner
from bilevel_anil.cli import main
from bilevel_anil.core.network import output_module
from bilevel_anil.core.options import OptionError, resolve_algorithm
from bilevel_anil.core.tasks import TaskBatch

# (MetaLearner keywords, run.py flags, fragment of the Python line, fragment of the CLI line)
RULES = [
    ({"algorithm": "imaml", "inner_optimizer": "adam"}, ["--problem", "imaml", "--inner-optimizer", "adam"],
     "inner_optimizer 'adam' does not fit the implicit meta-gradient", "--inner-optimizer 'adam' does not fit"),
    ({"algorithm": "ianil", "inner_optimizer": "adam"}, ["--problem", "ianil", "--inner-optimizer", "adam"],
     "inner_optimizer 'adam' does not fit", "--inner-optimizer 'adam' does not fit"),
    ({"algorithm": "maml", "lam": 2.0}, ["--problem", "maml", "--lam", "2"],
     "lam applies to imaml/ianil", "--lam applies to imaml/ianil"),
    ({"algorithm": "anil", "hypergrad": "neumann"}, ["--problem", "anil", "--hypergrad", "neumann"],
     "hypergrad applies to the implicit meta-gradient", "--hypergrad applies to the implicit meta-gradient"),
    ({"algorithm": "fomaml", "hypergrad_iterations": 3}, ["--problem", "fomaml", "--hypergrad-iterations", "3"],
     "hypergrad_iterations applies", "--hypergrad-iterations applies"),
    ({"algorithm": "maml", "inner_proximal": "pullback"}, ["--problem", "maml", "--inner-proximal", "pullback"],
     "inner_proximal applies to imaml/ianil", "--inner-proximal applies to imaml/ianil"),
    ({"algorithm": "pretrain", "grad": "first_order"}, ["--problem", "pretrain", "--first-order"],
     "grad='first_order' does not apply to pretrain", "--first-order does not apply to pretrain"),
    ({"algorithm": "reptile", "grad": "first_order"}, ["--problem", "reptile", "--first-order"],
     "grad='first_order' does not apply to reptile", "--first-order does not apply to reptile"),
    ({"algorithm": "maml", "grad": "implicit"}, ["--problem", "maml", "--grad", "implicit"],
     "grad 'implicit' needs the proximal inner objective", "--grad 'implicit' needs the proximal inner objective"),
    ({"algorithm": "imaml", "inner_batch": 5}, ["--problem", "imaml", "--inner-batch", "5"],
     "inner_batch needs the unrolled meta-gradient", "--inner-batch needs the unrolled meta-gradient"),
    ({"algorithm": "anil", "inner_lr": -1.0}, ["--problem", "anil", "--inner-lr", "-1"],
     "inner_lr must be a positive number", "--inner-lr must be a positive number"),
    ({"algorithm": "anil", "inner_steps": 0}, ["--problem", "anil", "--inner-steps", "0"],
     "inner_steps must be a positive integer", "--inner-steps must be a positive integer"),
    ({"algorithm": "imaml", "test_lam": float("nan")}, ["--problem", "imaml", "--test-lam", "nan"],
     "test_lam must be a number >= 0", "--test-lam must be a number >= 0"),
    ({"algorithm": "imaml", "hypergrad": "newton"}, ["--problem", "imaml", "--hypergrad", "newton"],
     "unknown hypergrad 'newton'", "unknown --hypergrad 'newton'"),
    ({"algorithm": "pretrain", "inner_steps": 3}, ["--problem", "pretrain", "--inner-steps", "3"],
     "inner_steps: pretrain does not adapt", "--inner-steps: pretrain does not adapt"),
]


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("keywords, flags, python_line, cli_line", RULES,
                         ids=[" ".join(case[1]) for case in RULES])
def test_one_rule_both_ways(keywords, flags, python_line, cli_line, capsys, tmp_path):
    algorithm = keywords.pop("algorithm")
    with pytest.raises(OptionError) as caught:
        MetaLearner(_net(), algorithm, **keywords)
    assert python_line in str(caught.value) and "--" not in str(caught.value), str(caught.value)
    assert main([*flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and cli_line in err, err
    assert not (tmp_path / "run").exists()


def test_imaml_adam_was_the_silent_mismatch():
    """imaml with Adam was accepted by MetaLearner and trained one inner loop (SGD, in the
    implicit lower problem) while evaluating another (Adam); unrolled imaml keeps the choice."""
    learner = MetaLearner(_net(), "imaml", grad="unrolled", inner_optimizer="adam")
    assert learner.algorithm.inner_optimizer == "adam" and learner.algorithm.grad == "unrolled"
    assert resolve_algorithm("reptile").inner_optimizer == "adam"


def test_the_meta_gradient_stays_one_switch():
    """The same settings build the implicit and the unrolled learner: the implicit gradient's
    settings belong to the proximal objective, kept (and recorded) with grad='unrolled'."""
    settings = {"inner_lr": 0.1, "inner_steps": 3, "lam": 2.0, "hypergrad": "cg", "hypergrad_iterations": 7}
    implicit = MetaLearner(_net(), "imaml", **settings)
    unrolled = MetaLearner(_net(), "imaml", grad="unrolled", **settings)
    assert (implicit.algorithm.grad, unrolled.algorithm.grad) == ("implicit", "unrolled")
    assert implicit.hypergrad == unrolled.hypergrad
    assert main(["--problem", "imaml", "--grad", "unrolled", "--hypergrad-iterations", "7", "--iterations", "0"]) == 2


def test_defaults_are_not_scope_errors():
    """Nothing given explicitly: every algorithm builds with its defaults."""
    for name in ("maml", "fomaml", "anil", "foanil", "imaml", "ianil", "reptile", "pretrain", "protonet"):
        MetaLearner(_net(), name)


class ClassifierFirst(nn.Module):
    """A network whose classifier is registered before its trunk (the trunk ends in a Linear)."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(8, 3)
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh())

    def forward(self, x):
        return self.classifier(self.trunk(x))


class HeadInTheMiddle(nn.Module):
    """The head is neither the last module registered nor the last nn.Linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)
        self.auxiliary = nn.Linear(8, 2)  # an unused extra head (a linear probe, say)

    def forward(self, x):
        return self.head(self.body(x))


def _batch(seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat(2).repeat(2, 1)
    return TaskBatch.of(torch.randn(2, 6, 4, generator=g, dtype=torch.float64), y,
                        torch.randn(2, 6, 4, generator=g, dtype=torch.float64), y)


@pytest.mark.parametrize("network, head", [(ClassifierFirst, "classifier"), (HeadInTheMiddle, "head")])
def test_default_head_is_the_module_that_gives_the_output(network, head):
    """ANIL's default head is the module whose output is the network's: the meta-gradient
    equals the one with head= named (to the last bit), not the one of the last nn.Linear
    in registration order (``trunk.2``), which differs."""
    torch.manual_seed(0)
    net = network().double()
    assert output_module(net) == head
    default = MetaLearner(copy.deepcopy(net), "anil", inner_lr=0.5).meta_gradient(_batch())
    named = MetaLearner(copy.deepcopy(net), "anil", head=head, inner_lr=0.5).meta_gradient(_batch())
    assert all(torch.equal(default[k], named[k]) for k in named)
    if network is ClassifierFirst:
        wrong = MetaLearner(copy.deepcopy(net), "anil", head="trunk.2", inner_lr=0.5).meta_gradient(_batch())
        difference = torch.cat([(wrong[k] - named[k]).flatten() for k in named]).norm()
        assert difference > 1e-3 * torch.cat([named[k].flatten() for k in named]).norm()


class ScaledOutput(nn.Module):
    """The output is computed after the last module: no submodule's output is returned as is."""

    def __init__(self):
        super().__init__()
        self.body, self.classifier = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        return 2.0 * self.classifier(torch.tanh(self.body(x)))


def test_a_head_that_cannot_be_told_is_asked_for_in_one_line():
    with pytest.raises(ValueError, match=r"cannot tell which part of ScaledOutput is its head .* head='<submodule>'"):
        MetaLearner(ScaledOutput(), "anil")
    assert MetaLearner(ScaledOutput(), "anil", head="classifier").learner.head.module == "classifier"
    assert MetaLearner(ScaledOutput(), "maml").learner.head.names == []  # MAML needs no head


def test_finding_the_head_leaves_the_network_as_it_was():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    net.train()
    before = copy.deepcopy(net.state_dict())
    assert output_module(net) == "2" and net.training and net[1].training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # running statistics untouched
