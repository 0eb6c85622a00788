"""The one wall-clock budget of the package's loops: meta-training (``fit``'s ``time_budget``,
counted over outer steps), body pretraining and the pipeline (counted over wall time). A budget
keeps in reserve the time of the work that must still fit after the last step (the latest
validation's), so that the loop stops early enough for it."""
from __future__ import annotations

import time
from typing import Optional


class Budget:
    """``seconds`` from ``start`` (``time.perf_counter()``); None: no budget, never over.

    Examples:
        >>> budget = Budget(10.0, start=0.0)
        >>> budget.over(spent=6.0), budget.fraction(spent=6.0)
        (False, 0.6)
        >>> budget.reserve = 5.0  # the latest validation took 5 s: it must still fit
        >>> budget.over(spent=6.0)
        True
        >>> Budget(None).over(spent=10 ** 9)
        False
    """

    def __init__(self, seconds: Optional[float], start: Optional[float] = None):
        self.seconds = seconds
        self.start = time.perf_counter() if start is None else start
        self.reserve = 0.0

    def spent(self) -> float:
        """Wall seconds since ``start``."""
        return time.perf_counter() - self.start

    def fraction(self, spent: Optional[float] = None) -> float:
        """How much of the budget is spent (0 without a budget), at most 1."""
        if not self.seconds:
            return 0.0
        return min(1.0, (self.spent() if spent is None else spent) / self.seconds)

    def over(self, spent: Optional[float] = None) -> bool:
        """Whether ``spent`` seconds (default: the wall time since ``start``) and the reserve
        reach the budget."""
        if self.seconds is None:
            return False
        return (self.spent() if spent is None else spent) + self.reserve >= self.seconds
