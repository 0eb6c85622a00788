"""The 1-40-40-1 ReLU network of the MAML paper's sine-wave regression."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from . import functional as TF


class MLP(nn.Module):
    """Hidden ReLU layers (the body) and a linear output layer (the head)."""

    def __init__(self, in_features: int = 1, hidden: tuple[int, ...] = (40, 40), out_features: int = 1):
        super().__init__()
        layers, width = [], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.arch = {"name": "mlp", "in_features": in_features, "hidden": list(hidden),
                     "out_features": out_features}

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def body_forward(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        h = x
        for i in range(0, len(self.body), 2):
            h = torch.relu(TF.linear(h, params[f"body.{i}.weight"], params[f"body.{i}.bias"]))
        return h

    def head_forward(self, params: Mapping[str, Tensor], features: Tensor) -> Tensor:
        return TF.linear(features, params["head.weight"], params["head.bias"])
