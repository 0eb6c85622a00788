"""Test-time fine-tuning options (P>M>F's third stage), chosen on validation tasks.

A :class:`FineTune` says which parameters a test task adapts (``"head"``, or ``"all"``: the
whole network, as MAML does, whatever the network was meta-trained with), at which step size
and for how many steps; :func:`choose_fine_tune` scores a grid of them on validation tasks (one
adaptation path per parameter set and step size gives every step count) and returns the best.

Example:
    >>> FineTune("all", 5, 0.04).name
    'all parameters, 5 steps at lr 0.04'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from torch import Tensor

from .errors import UsageError
from .evaluation import Interval, evaluate
from .learner import Learner

PARAMETER_SETS = ("head", "all")


@dataclass(frozen=True)
class FineTune:
    """``steps`` inner steps at ``lr`` on the support set, adapting ``params`` (``"head"`` or
    ``"all"``), starting where the learner's head init puts the head."""

    params: str
    steps: int
    lr: float

    def __post_init__(self) -> None:
        if self.params not in PARAMETER_SETS:
            raise UsageError(f"fine-tuning params must be one of {', '.join(PARAMETER_SETS)}, not {self.params!r}")
        if not (isinstance(self.steps, int) and self.steps >= 0):
            raise UsageError(f"fine-tuning steps must be an integer >= 0, got {self.steps!r}")
        if not self.lr > 0:
            raise UsageError(f"fine-tuning lr must be positive, got {self.lr!r}")

    @property
    def name(self) -> str:
        what = "the head" if self.params == "head" else "all parameters"
        return f"{what}, {self.steps} step{'s' if self.steps != 1 else ''} at lr {self.lr:g}"


def fine_tune_learner(learner: Learner, params: str) -> Learner:
    """``learner`` adapting ``params`` (``"head"``: its head; ``"all"``: every parameter), with
    its loss, head and head init."""
    if params == "head":
        names = set(learner.head.names)
        return Learner(learner.model, learner.algorithm, learner.loss, head=learner.head.module,
                       adapt=lambda n: n in names, head_init=learner.head_init)
    return Learner(learner.model, learner.algorithm, learner.loss, head=learner.head.module,
                   adapt=lambda n: True, head_init=learner.head_init)


def score_fine_tunes(learner: Learner, theta: Mapping[str, Tensor], tasks, options: Sequence[FineTune]
                     ) -> dict[FineTune, Interval]:
    """The query score of each option on ``tasks`` (one adaptation path per parameter set and
    step size, scored after each option's step count)."""
    scores: dict[FineTune, Interval] = {}
    for params in PARAMETER_SETS:
        tuned = None
        for lr in sorted({o.lr for o in options if o.params == params}):
            wanted = [o for o in options if o.params == params and o.lr == lr]
            tuned = tuned or fine_tune_learner(learner, params)
            by_steps = evaluate(tuned, theta, tasks, sorted({o.steps for o in wanted}), lr)
            scores.update({o: by_steps[o.steps] for o in wanted})
    return scores


def fine_tune_grid(inner_lr: float, steps: int, params: Sequence[str] = PARAMETER_SETS) -> list[FineTune]:
    """The options :func:`choose_fine_tune` tries: 0 steps (the starting head), the learner's
    ``steps`` and 2x, 4x as many, at ``inner_lr`` for the head and ``inner_lr`` and a tenth of
    it for all parameters."""
    counts = sorted({0, steps, 2 * steps, 4 * steps} - {0}) or [1, 2, 4]
    grid = [FineTune("head", 0, inner_lr)]
    for p in params:
        for lr in ([inner_lr] if p == "head" else [inner_lr, inner_lr / 10]):
            grid += [FineTune(p, k, lr) for k in counts]
    return grid


def choose_fine_tune(learner: Learner, theta: Mapping[str, Tensor], validation, options: Sequence[FineTune],
                     higher_is_better: bool = True) -> tuple[FineTune, dict[FineTune, Interval]]:
    """The option with the best validation score (the first listed among equals) and every
    option's score."""
    scores = score_fine_tunes(learner, theta, validation, options)
    ordered = [o for o in options if o in scores]
    pick = max if higher_is_better else min
    return pick(ordered, key=lambda o: scores[o].mean), scores
