"""Networks with a body/head split and a task-batched functional forward."""
from __future__ import annotations

from torch import nn

from .conv4 import Conv4
from .mlp import MLP


def build_model(arch: dict) -> nn.Module:
    """Rebuild a network from the ``arch`` dict it carries (as stored in checkpoints)."""
    kwargs = {k: v for k, v in arch.items() if k != "name"}
    if arch["name"] == "conv4":
        return Conv4(**kwargs)
    if arch["name"] == "mlp":
        kwargs["hidden"] = tuple(kwargs["hidden"])
        return MLP(**kwargs)
    raise ValueError(f"unknown architecture {arch['name']!r}")


__all__ = ["Conv4", "MLP", "build_model"]
