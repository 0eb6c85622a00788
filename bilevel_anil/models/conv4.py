"""The Conv4 network of the MAML/ANIL papers for Omniglot-sized images."""
from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from . import functional as TF
from .body_spec import BodySpec


BN_MODES = ("batch", "running")


class ConvBlock(nn.Module):
    """3x3 convolution, batch norm, ReLU, 2x2 max pooling."""

    def __init__(self, in_channels: int, out_channels: int, bn: str = "batch"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels, track_running_stats=(bn == "running"))
        self.pool = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.bn(self.conv(x)))


class Conv4(nn.Module):
    """Four conv blocks (the body) and a linear classifier (the head).

    bn: ``"batch"`` normalises with the statistics of the set being processed, in training
    and at test time (each task's support set and query set separately: transductive, as
    in the MAML reference). ``"running"`` does so in training mode and also accumulates
    running statistics; in evaluation mode (``model.eval()``) every example is normalised
    with those running statistics alone (not transductive).

    ``forward`` takes one task's images ``[n, C, H, W]``; ``body_forward`` and
    ``head_forward`` take a batch of tasks ``[B, n, ...]`` with parameters given by name,
    shared or per task (see ``bilevel_anil.models.functional``).
    """

    def __init__(self, ways: int, in_channels: int = 1, hidden: int = 64, image_size: int = 28, bn: str = "batch"):
        super().__init__()
        if bn not in BN_MODES:
            raise ValueError(f"unknown BatchNorm mode {bn!r}: choose one of {', '.join(BN_MODES)}")
        self.bn_mode = bn
        blocks, channels, size = [], in_channels, image_size
        for _ in range(4):
            blocks.append(ConvBlock(channels, hidden, bn))
            channels, size = hidden, size // 2
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Linear(hidden * size * size, ways)
        self.arch = {"name": "conv4", "ways": ways, "in_channels": in_channels,
                     "hidden": hidden, "image_size": image_size, "bn": bn}

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def body_forward(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Features ``[B, n, D]`` of images ``x`` of shape ``[B, n, C, H, W]``, computed in the
        task-channel layout of ``bilevel_anil.models.functional``."""
        tasks = x.shape[0]
        h = TF.to_task_channels(x)
        for i, block in enumerate(self.body[:-1]):
            p = f"body.{i}."
            conv, bn = block.conv, block.bn
            h = TF.conv2d(h, TF.per_task(params[p + "conv.weight"], conv.weight, tasks),
                          TF.per_task(params[p + "conv.bias"], conv.bias, tasks), tasks, padding=1)
            weight = TF.per_task(params[p + "bn.weight"], bn.weight, tasks)
            bias = TF.per_task(params[p + "bn.bias"], bn.bias, tasks)
            if self.bn_mode == "running" and not self.training:
                h = TF.running_batch_norm(h, weight, bias, bn.running_mean, bn.running_var, bn.eps)
            else:
                if self.bn_mode == "running":
                    TF.update_running_stats(h, tasks, bn.running_mean, bn.running_var, bn.momentum)
                h = TF.task_batch_norm(h, weight, bias, bn.eps)
            h = TF.relu_maxpool(h)
        return TF.task_features(h, tasks)

    def head_forward(self, params: Mapping[str, Tensor], features: Tensor) -> Tensor:
        """Logits ``[B, n, ways]`` from features ``[B, n, D]``."""
        return TF.linear(features, params["head.weight"], params["head.bias"])


# conv4: the MAML/ANIL Conv4 (64 filters); conv4-32: MAML's mini-ImageNet network (32 filters).
# Four 2x2 max-pools leave nothing of an input under 16 pixels.
CONV4 = BodySpec("conv4", "the MAML/ANIL Conv4 (64 filters, max-pooling; hand-written task-batched forward)",
                 network=lambda ways, c, size, bn: Conv4(ways, in_channels=c, hidden=64, image_size=size, bn=bn),
                 min_image_size=16, bn_modes=BN_MODES)
CONV4_32 = BodySpec("conv4-32", "Conv4 with 32 filters (MAML's mini-ImageNet network)",
                    network=lambda ways, c, size, bn: Conv4(ways, in_channels=c, hidden=32, image_size=size, bn=bn),
                    min_image_size=16, bn_modes=BN_MODES)
