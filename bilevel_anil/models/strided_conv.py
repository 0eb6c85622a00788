"""The iMAML authors' Omniglot network (aravindr93/imaml_dev, ``make_conv_network``).

Four 3x3 convolutions with stride 2 and 64 filters, each followed by BatchNorm without
running statistics and ReLU; no max-pooling; the input of the third convolution is padded
by one pixel at the right and bottom, so 28x28 images end as 2x2x64 = 256 features.
Weights are initialised as in that code: Xavier-uniform with gain 1.73, biases U(0, 0.05)
(the new linear head included, see ``init_like_imaml``).
"""
from __future__ import annotations

import torch
from torch import nn

from .body_spec import BodySpec


def _out(size: int) -> int:
    return (size + 2 - 3) // 2 + 1


def strided_conv_body(in_channels: int, image_size: int, hidden: int = 64) -> tuple[nn.Module, int]:
    """The body and its feature size for square ``image_size`` inputs."""
    layers: list[nn.Module] = []
    channels, size = in_channels, image_size
    for i in range(4):
        if i == 2:
            layers.append(nn.ZeroPad2d((0, 1, 0, 1)))
            size += 1
        layers += [nn.Conv2d(channels, hidden, 3, stride=2, padding=1),
                   nn.BatchNorm2d(hidden, track_running_stats=False), nn.ReLU()]
        channels, size = hidden, _out(size)
    layers.append(nn.Flatten())
    body = nn.Sequential(*layers)
    return body, hidden * size * size


def init_like_imaml(model: nn.Module) -> None:
    """Xavier-uniform (gain 1.73) weights and U(0, 0.05) biases for every conv and linear layer."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            torch.nn.init.xavier_uniform_(module.weight, gain=1.73)
            torch.nn.init.uniform_(module.bias, 0.0, 0.05)


CONV4_STRIDED = BodySpec("conv4-strided", "the iMAML authors' Omniglot network (stride-2 convolutions, no pooling)",
                         body=strided_conv_body, init=init_like_imaml)
