"""Test-time fine-tuning options (P>M>F's third stage), chosen on validation tasks.

A ``FineTune`` says which parameters a test task adapts (``"head"``, or ``"all"``: the
whole network, as MAML does, whatever the network was meta-trained with), at which step size,
for how many steps, and on how many augmented copies of the support set besides the set
itself; ``choose_fine_tune`` scores a grid of them on validation tasks (one adaptation
path per parameter set, step size and copies gives every step count) and returns the best.

Example:
    >>> FineTune("all", 5, 0.04).name
    'all parameters, 5 steps at lr 0.04'
    >>> FineTune("all", 5, 0.04, copies=4).name
    'all parameters, 5 steps at lr 0.04, support set + 4 shifted copies'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import torch
from torch import Tensor

from ..data.augment import augmented_copies
from ..core.tasks import TaskBatch, TaskSet
from ..errors import UsageError
from ..core.evaluation import Interval, evaluate
from ..core.learner import Learner

if TYPE_CHECKING:
    from ..api.meta_learner import MetaLearner

PARAMETER_SETS = ("head", "all")


@dataclass(frozen=True)
class FineTune:
    """One way of fine-tuning at test time.

    Args:
        params: ``"head"`` or ``"all"``: the parameters adapted.
        steps: Inner steps on the support set.
        lr: Their step size.
        copies: Augmented copies of the support set added to it (shifted, and mirrored for
            colour images).

    Raises:
        ValueError: For unknown ``params``, negative ``steps`` or ``copies``, or ``lr`` ≤ 0.

    Examples:
        >>> FineTune("all", 20, 0.01, copies=4).name
        'all parameters, 20 steps at lr 0.01, support set + 4 shifted copies'
    """

    params: str
    steps: int
    lr: float
    copies: int = 0

    def __post_init__(self) -> None:
        if self.params not in PARAMETER_SETS:
            raise UsageError(f"fine-tuning params must be one of {', '.join(PARAMETER_SETS)}, not {self.params!r}")
        if not (isinstance(self.steps, int) and self.steps >= 0):
            raise UsageError(f"fine-tuning steps must be an integer >= 0, got {self.steps!r}")
        if not self.lr > 0:
            raise UsageError(f"fine-tuning lr must be positive, got {self.lr!r}")
        if not (isinstance(self.copies, int) and self.copies >= 0):
            raise UsageError(f"fine-tuning copies must be an integer >= 0, got {self.copies!r}")

    @property
    def name(self) -> str:
        what = "the head" if self.params == "head" else "all parameters"
        copies = f", support set + {self.copies} shifted copies" if self.copies else ""
        return f"{what}, {self.steps} step{'s' if self.steps != 1 else ''} at lr {self.lr:g}{copies}"


def fine_tune_learner(learner: Learner, params: str) -> Learner:
    """``learner`` adapting ``params`` (``"head"``: its head; ``"all"``: every parameter), with
    its loss, head and head init."""
    head = set(learner.head.names)
    return Learner(learner.model, learner.algorithm, learner.loss, head=learner.head.module,
                   adapt=(lambda n: n in head) if params == "head" else (lambda n: True), head_init=learner.head_init)


def with_copies(tasks: TaskBatch, copies: int, seed: int) -> TaskBatch:
    """``tasks`` whose support sets hold ``copies`` augmented copies of each example as well."""
    if not copies:
        return tasks
    x, y = augmented_copies(tasks.support.x, tasks.support.y, copies, torch.Generator().manual_seed(seed))
    return TaskBatch(TaskSet(x, y), tasks.query)


def score_fine_tunes(learner: Learner, theta: Mapping[str, Tensor], tasks: TaskBatch, options: Sequence[FineTune],
                     seed: int = 0) -> dict[FineTune, Interval]:
    """The query score of each option on ``tasks`` (one adaptation path per parameter set,
    step size and copies, scored after each option's step count; copies drawn with ``seed``)."""
    scores: dict[FineTune, Interval] = {}
    for params in PARAMETER_SETS:
        tuned = None
        for lr, copies in sorted({(o.lr, o.copies) for o in options if o.params == params}):
            wanted = [o for o in options if (o.params, o.lr, o.copies) == (params, lr, copies)]
            tuned = tuned or fine_tune_learner(learner, params)
            by_steps = evaluate(tuned, theta, with_copies(tasks, copies, seed), sorted({o.steps for o in wanted}), lr)
            scores.update({o: by_steps[o.steps] for o in wanted})
    return scores


def fine_tune_grid(inner_lr: float, steps: int, params: Sequence[str] = PARAMETER_SETS,
                   copies: int = 4) -> list[FineTune]:
    """The options ``choose_fine_tune`` tries, cheapest first: 0 steps (the starting head,
    from the support set alone and with ``copies`` shifted copies of it); the learner's
    ``steps`` and 2x, 4x as many at ``inner_lr`` for the head; the same counts for all
    parameters at ``inner_lr`` and a tenth of it, and at ``inner_lr`` with the copies."""
    if not (isinstance(steps, int) and steps >= 1):
        raise UsageError(f"fine_tune_grid needs steps >= 1 (0 steps is always tried), got {steps!r}")
    counts = sorted({steps, 2 * steps, 4 * steps})
    grid = [FineTune("head", 0, inner_lr)] + ([FineTune("head", 0, inner_lr, copies)] if copies else [])
    if "head" in params:
        grid += [FineTune("head", k, inner_lr) for k in counts]
    if "all" in params:
        settings = [(inner_lr, 0), (inner_lr / 10, 0)] + ([(inner_lr, copies)] if copies else [])
        grid += [FineTune("all", k, lr, c) for lr, c in settings for k in counts]
    return grid


def choose_fine_tune(learner: MetaLearner, validation: TaskBatch, options: Optional[Sequence[FineTune]] = None,
                     *, seed: int = 0) -> tuple[FineTune, dict[FineTune, Interval]]:
    """The test-time fine-tuning of a meta-trained learner that scores best on validation tasks.

    Every option adapts from the learner's θ, its head starting where the learner's head init
    puts it, and is scored on the query sets after its steps.

    Args:
        learner: A meta-trained ``MetaLearner`` (or one loaded with ``MetaLearner.load``).
        validation: The validation tasks (``TaskBatch``).
        options: The ``FineTune`` options; among equal scores the first listed wins, so list
            the cheaper ones first. Default: the grid ``run.py pipeline`` tries (the head or
            every parameter, 0 to 4 times the learner's test-time steps, its step size and a
            tenth of it, with and without 4 shifted copies of the support set).
        seed: The seed of the augmented copies.

    Returns:
        The chosen option and every option's score (an ``Interval``), as a pair.

    Raises:
        ValueError: When ``learner`` is not a ``MetaLearner`` or ``options`` is empty.

    Examples:
        >>> import torch
        >>> from bilevel_anil import MetaLearner, TaskBatch, FineTune, choose_fine_tune
        >>> from bilevel_anil.models import Conv4
        >>> x, y = torch.randn(4, 3, 1, 28, 28), torch.arange(3).repeat(4, 1)
        >>> meta = MetaLearner(Conv4(ways=3), "anil", inner_lr=0.1)
        >>> options = [FineTune("head", 1, 0.1), FineTune("all", 2, 0.1)]
        >>> chosen, scores = choose_fine_tune(meta, TaskBatch.of(x, y, x, y), options)
        >>> chosen in options, len(scores)
        (True, 2)
    """
    from ..api.meta_learner import MetaLearner

    if not isinstance(learner, MetaLearner):
        raise UsageError(f"learner must be a MetaLearner, got {type(learner).__name__}")
    if options is None:
        options = fine_tune_grid(learner.inner_lr, max(1, learner.test_inner_steps or learner.inner_steps))
    options = list(options)
    if not options:
        raise UsageError("options is empty: give at least one FineTune")
    scores = score_fine_tunes(learner.test_learner, learner.learner.meta_params(), validation, options, seed)
    ordered = [o for o in options if o in scores]
    pick = max if learner.learner.loss.higher_is_better else min
    return pick(ordered, key=lambda o: scores[o].mean), scores
