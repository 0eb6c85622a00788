"""fit and evaluate say what they do (part of issue 36): a callback stops the fit only by
returning True; schedule must return a scheduler; resume=True with nothing to resume is one
line; evaluate's steps are checked as its docstring promises."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bilevel_anil import MetaLearner, function_tasks


def line(g: torch.Generator):
    x = torch.randn(10, 1, generator=g)
    y = torch.randn(1, generator=g) * x
    return x[:5], y[:5], x[5:], y[5:]


def learner() -> MetaLearner:
    torch.manual_seed(0)
    return MetaLearner(nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)), "maml", loss="mse", inner_lr=0.1)


@pytest.mark.parametrize("answer", ["no", {"loss": 1.0}, 1, 0.0])
def test_a_callback_stops_only_by_returning_true(answer):
    with pytest.raises(TypeError, match=r"a callback returned .*: return True to stop the fit, or None"):
        learner().fit(function_tasks(line, seed=0), steps=3, meta_batch=2, callbacks=[lambda info: answer])


def test_false_and_none_go_on_and_true_stops():
    seen = []
    result = learner().fit(function_tasks(line, seed=0), steps=4, meta_batch=2,
                           callbacks=[lambda info: seen.append(info.step), lambda info: False])
    assert result.steps_done == 4 and seen == [1, 2, 3, 4]
    assert learner().fit(function_tasks(line, seed=0), steps=4, meta_batch=2,
                         callbacks=[lambda info: info.step == 2]).steps_done == 2


def test_schedule_must_return_a_scheduler():
    with pytest.raises(ValueError, match="schedule\\(optimizer\\) returned NoneType, not a learning-rate scheduler"):
        learner().fit(function_tasks(line, seed=0), steps=2, meta_batch=2, schedule=lambda optimizer: None)
    with pytest.raises(ValueError, match="returned float, not a learning-rate scheduler"):
        learner().fit(function_tasks(line, seed=0), steps=2, meta_batch=2, schedule=lambda optimizer: 0.5)


def test_resume_with_nothing_to_resume_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"resume=True: .* holds no last.pt to continue: drop resume"):
        learner().fit(function_tasks(line, seed=0), steps=2, meta_batch=2, out=tmp_path / "new", resume=True)
    assert not (tmp_path / "new" / "metrics.csv").exists()


@pytest.mark.parametrize("steps, fragment", [(3, "non-empty list of inner-step counts"), ([], "non-empty list"),
                                             ([1, -2], "non-negative integers, got -2"),
                                             ([True], "non-negative integers, got True"), ("5", "non-empty list")])
def test_evaluate_checks_its_steps(steps, fragment):
    with pytest.raises(ValueError, match=fragment):
        learner().evaluate(function_tasks(line, seed=2).sample(4), steps=steps)
    assert sorted(learner().evaluate(function_tasks(line, seed=2).sample(4), steps=range(2))) == [0, 1]


@pytest.mark.parametrize("metadata, fragment", [({"note": print}, "got builtin_function_or_method"),
                                                ({1: "x"}, "must have string keys"),
                                                ({"nested": [{"ok": 1}, object()]}, "got object")])
def test_metadata_must_be_readable_back(tmp_path, metadata, fragment):
    """fit's metadata goes into every checkpoint, which the safe reader would refuse to read
    if it held anything but tensors and plain values: it is refused before any step."""
    with pytest.raises(ValueError, match=fragment):
        learner().fit(function_tasks(line, seed=0), steps=2, meta_batch=2, out=tmp_path / "run", metadata=metadata)
    assert not (tmp_path / "run" / "last.pt").exists()
