"""Task losses: what the inner loop minimises and what a task is scored by.

One ``TaskLoss`` holds a loss's per-task mean, its score (accuracy for classification,
the loss itself otherwise) and whether a higher score is better, so nothing else in the
package branches on the loss's name. A user's loss is a function of one task's outputs and
targets returning a scalar (as ``torch.nn.functional.mse_loss`` does); it is run over the
tasks of a batch with ``torch.func.vmap``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

from ..errors import UsageError

OneTaskLoss = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class TaskLoss:
    """A loss over task batches: ``per_task(outputs [B, n, ...], targets [B, n, ...]) -> [B]``.

    name: ``"cross_entropy"``, ``"mse"`` or the user's function's name.
    metric: what ``score`` reports (``"accuracy"`` or the loss's name).
    """

    name: str
    per_task: Callable[[Tensor, Tensor], Tensor]
    metric: str
    classification: bool = False

    @property
    def higher_is_better(self) -> bool:
        return self.classification

    def score(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-task score ``[B]``: the fraction of correct predictions for classification,
        else the loss."""
        if self.classification:
            return (outputs.argmax(dim=-1) == targets).float().mean(dim=1)
        return self.per_task(outputs, targets)


def _cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    per_example = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
    return per_example.view(targets.shape).mean(dim=1)


def _mse(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs - targets).pow(2).flatten(1).mean(dim=1)


LOSSES: dict[str, TaskLoss] = {
    "cross_entropy": TaskLoss("cross_entropy", _cross_entropy, "accuracy", classification=True),
    "mse": TaskLoss("mse", _mse, "mse"),
}


def custom_loss(fn: OneTaskLoss, name: Optional[str] = None) -> TaskLoss:
    """A ``TaskLoss`` from ``fn(outputs [n, ...], targets [n, ...]) -> scalar`` for one task
    (scored by the loss itself, lower is better).

    Example::

        >>> import torch, torch.nn.functional as F
        >>> loss = custom_loss(F.l1_loss)
        >>> loss.per_task(torch.zeros(2, 3, 1), torch.ones(2, 3, 1))
        tensor([1., 1.])
    """
    label = name or getattr(fn, "__name__", type(fn).__name__)
    return TaskLoss(label, vmap(fn), label)


def resolve_loss(loss: Union[str, OneTaskLoss, TaskLoss]) -> TaskLoss:
    """``"cross_entropy"``, ``"mse"``, a ``TaskLoss``, or a one-task loss function."""
    if isinstance(loss, TaskLoss):
        return loss
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise UsageError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}, or pass a function "
                             "loss(outputs, targets) -> scalar for one task")
        return LOSSES[loss]
    if callable(loss):
        return custom_loss(loss)
    raise UsageError(f"loss must be a name ({', '.join(LOSSES)}) or a function, not {type(loss).__name__}")
