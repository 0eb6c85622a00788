"""The Conv4 network of the MAML/ANIL papers for Omniglot-sized images."""
from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from . import functional as TF


class ConvBlock(nn.Module):
    """3x3 convolution, batch norm (batch statistics), ReLU, 2x2 max pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.pool = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.bn(self.conv(x)))


class Conv4(nn.Module):
    """Four conv blocks (the body) and a linear classifier (the head).

    ``forward`` takes one task's images ``[n, C, H, W]``; ``body_forward`` and
    ``head_forward`` take a batch of tasks ``[B, n, ...]`` with parameters given by name,
    shared or per task (see :mod:`bilevel_anil.models.functional`).
    """

    def __init__(self, ways: int, in_channels: int = 1, hidden: int = 64, image_size: int = 28):
        super().__init__()
        blocks, channels, size = [], in_channels, image_size
        for _ in range(4):
            blocks.append(ConvBlock(channels, hidden))
            channels, size = hidden, size // 2
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Linear(hidden * size * size, ways)
        self.arch = {"name": "conv4", "ways": ways, "in_channels": in_channels,
                     "hidden": hidden, "image_size": image_size}

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def body_forward(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Features ``[B, n, D]`` of images ``x`` of shape ``[B, n, C, H, W]``."""
        h = x
        for i, block in enumerate(self.body[:-1]):
            p = f"body.{i}."
            h = TF.conv2d(h, params[p + "conv.weight"], params[p + "conv.bias"], padding=1)
            h = TF.task_batch_norm(h, params[p + "bn.weight"], params[p + "bn.bias"], block.bn.eps)
            h = TF.relu_maxpool(h)
        return h.flatten(2)

    def head_forward(self, params: Mapping[str, Tensor], features: Tensor) -> Tensor:
        """Logits ``[B, n, ways]`` from features ``[B, n, D]``."""
        return TF.linear(features, params["head.weight"], params["head.bias"])
