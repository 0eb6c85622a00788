"""What ``bilevel_anil.MetaLearner.fit`` tells its callbacks after each outer step
(``StepInfo``), and a ready-made one (``EarlyStopping``).

A callback is any ``callable(info: StepInfo) -> bool | None``; returning ``True`` stops the
fit after this step (the engine then validates and checkpoints there if the step had not, so
``best.pt`` and ``last.pt`` cover it). Under torchrun every process calls it with the same
averaged figures, and the fit stops when any process's callback asks to.

Example:
    >>> seen = []
    >>> def log(info: StepInfo) -> None:
    ...     seen.append((info.step, round(info.train_loss, 2)))
    >>> stop = EarlyStopping(patience=2)
    >>> [stop(StepInfo(step=s, steps=9, train_loss=1.0, val_score=v)) for s, v in
    ...  [(1, 0.5), (2, None), (3, 0.4), (4, 0.45)]]
    [False, False, False, True]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Callback", "EarlyStopping", "StepInfo"]


@dataclass(frozen=True)
class StepInfo:
    """One outer step, as ``metrics.csv`` records it: what ``MetaLearner.fit`` passes its callbacks.

    Attributes:
        step: The outer step just taken (1-based, counting resumed steps).
        steps: The fit's total.
        train_loss: The query loss of the step's tasks (averaged over the processes).
        train_score: Their score (accuracy, or the loss for regression); None for a loss
            without one.
        val_score: The validation score, on validation steps only (else None).
        val_ci95: Its 95% half-width, on validation steps only.
        higher_is_better: How to compare scores (accuracy: True; MSE: False).
        train_seconds: Seconds of outer steps so far in this session.

    Examples:
        >>> info = StepInfo(step=10, steps=100, train_loss=0.4, val_score=0.9, val_ci95=0.01)
        >>> info.val_score is not None  # a validation step
        True
    """

    step: int
    steps: int
    train_loss: float
    train_score: Optional[float] = None
    val_score: Optional[float] = None
    val_ci95: Optional[float] = None
    higher_is_better: bool = True
    train_seconds: float = 0.0


Callback = Callable[[StepInfo], Optional[bool]]


class EarlyStopping:
    """A callback that stops a fit when validation has stopped improving.

    It stops after ``patience`` validations in a row that did not beat the best score by more
    than ``min_delta``; steps without validation are ignored. Keeps its state across the
    validations of one fit (use a new one per fit).

    Args:
        patience: Validations without improvement before stopping.
        min_delta: The smallest change that counts as an improvement.

    Raises:
        ValueError: When ``patience`` is not a positive integer or ``min_delta`` is negative.

    Examples:
        >>> stop = EarlyStopping(patience=2)
        >>> [stop(StepInfo(step=s, steps=9, train_loss=0.0, val_score=v)) for s, v in enumerate([0.5, 0.7, 0.6, 0.7], 1)]
        [False, False, False, True]
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0):
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.patience, self.min_delta = patience, float(min_delta)
        self.best: Optional[float] = None
        self.bad = 0

    def __call__(self, info: StepInfo) -> bool:
        if info.val_score is None:
            return False
        sign = 1.0 if info.higher_is_better else -1.0
        if self.best is None or sign * (info.val_score - self.best) > self.min_delta:
            self.best, self.bad = info.val_score, 0
            return False
        self.bad += 1
        return self.bad >= self.patience
