"""Few-shot evaluation: per-task scores before and after adaptation, with 95% intervals."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from . import distributed
from .tasks import TaskBatch
from .distributed import Group
from .learner import Learner


@dataclass(frozen=True)
class Interval:
    """The mean of per-task values with the half-width of its normal 95% confidence interval.

    Attributes:
        mean: The mean over tasks.
        ci95: 1.96 standard errors (NaN for one task).
        tasks: The number of tasks.
        median: The median over tasks.
        nonfinite: How many tasks gave a non-finite value (e.g. a diverging inner loop).

    Examples:
        >>> import torch
        >>> score = Interval.of(torch.tensor([0.8, 0.9, 1.0, 0.9]))
        >>> score.percent(), score.tasks
        ('90.00% ± 8.00%', 4)
    """

    mean: float
    ci95: float
    tasks: int
    median: float = float("nan")
    nonfinite: int = 0

    @staticmethod
    def of(values: Tensor) -> "Interval":
        """The interval of per-task values.

        Args:
            values: A tensor of per-task values.

        Returns:
            Their ``Interval``.
        """
        values = values.double()
        n = values.numel()
        half = 1.96 * values.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
        return Interval(values.mean().item(), half, n, values.median().item(),
                        int((~torch.isfinite(values)).sum()))

    def percent(self) -> str:
        """The mean and half-width as percentages, e.g. ``"93.94% ± 0.51%"``.
        """
        return f"{100 * self.mean:.2f}% ± {100 * self.ci95:.2f}%"


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in evaluation mode (matters for BatchNorm with running statistics)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def task_scores(learner: Learner, theta: Mapping[str, Tensor], episodes: TaskBatch,
                steps: Sequence[int], lr: float, chunk: int = 16) -> dict[int, Tensor]:
    """Per-task query score (accuracy for classification, MSE for regression) after each
    number of inner steps in ``steps``, with the network in evaluation mode."""
    wanted = sorted(set(steps))
    scores: dict[int, list[Tensor]] = {k: [] for k in wanted}
    device = next(iter(theta.values())).device
    with torch.no_grad(), eval_mode(learner.model):
        for part in episodes.chunks(chunk):
            part = part.to(device)
            query = learner.predictor(theta, part.query.x)
            for k, fast in enumerate(learner.adapt_path(theta, part.support.x, part.support.y, wanted[-1], lr)):
                if k in scores:
                    out = query(fast)
                    scores[k].append(learner.task_scores(out, part.query.y).cpu())
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in scores.items()}


def evaluate(learner: Learner, theta: Mapping[str, Tensor], episodes: TaskBatch,
             steps: Sequence[int], lr: float, group: Optional[Group] = None) -> dict[int, Interval]:
    """Mean and 95% interval of the per-task query score after each number of inner steps.
    With several processes (``group``, default: this run's), each scores its share of the
    tasks and the scores are gathered in task order: the same intervals as one process."""
    group = group or distributed.current()
    mine = episodes.select(group.share(episodes.tasks))
    scores = task_scores(learner, theta, mine, steps, lr)
    return {k: Interval.of(group.gather_blocks(v, episodes.tasks)) for k, v in scores.items()}
