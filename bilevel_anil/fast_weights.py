"""Functional updates of fast weights: each step returns new tensors, keeping the graph."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from torch import Tensor


def sgd_step(params: Mapping[str, Tensor], grads: Sequence[Optional[Tensor]], lr: float) -> dict[str, Tensor]:
    """``p - lr * g`` for each named tensor; a ``None`` gradient leaves the tensor as it is."""
    return {name: p if g is None else p - lr * g for (name, p), g in zip(params.items(), grads)}
