"""What ``--arch NAME`` builds (``BodySpec``); the registry of them is
``bilevel_anil.models.registry``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import UsageError, first_line


@dataclass(frozen=True)
class BodySpec:
    """One image network of the command line.

    body: ``(in_channels, image_size) -> (body, features)``: a module from images
        ``[n, C, H, W]`` to features ``[n, features]``; the package adds a linear head of
        ``--ways`` outputs and runs it through the generic per-task path
        (``TaskBatchedNet``).
    network: instead of ``body``, ``(ways, in_channels, image_size, bn) -> nn.Module`` for a
        complete network with its own hand-written task-batched forward (Conv4).
    min_image_size: the smallest square input it runs on (``--image-size`` is checked against it).
    bn_modes: the ``--bn`` modes it supports (the generic path: ``batch`` only).
    init: called on the whole network after it is built (e.g. the iMAML authors' initialisation).

    Example:
        >>> from torch import nn
        >>> tiny = BodySpec("tiny", "one convolution", body=lambda c, s: (
        ...     nn.Sequential(nn.Conv2d(c, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 8))
        >>> tiny.build(ways=5, in_channels=1, image_size=28)(__import__("torch").zeros(2, 1, 28, 28)).shape
        torch.Size([2, 5])
    """

    name: str
    description: str
    body: Optional[Callable[[int, int], tuple[nn.Module, int]]] = None
    network: Optional[Callable[[int, int, int, str], nn.Module]] = None
    min_image_size: int = 8
    bn_modes: tuple[str, ...] = ("batch",)
    init: Optional[Callable[[nn.Module], None]] = None

    def __post_init__(self) -> None:
        if (self.body is None) == (self.network is None):
            raise ValueError(f"body {self.name!r}: give exactly one of body= (a feature extractor) or network=")

    def build(self, ways: int, in_channels: int = 1, image_size: int = 28, bn: str = "batch") -> nn.Module:
        """A randomly initialised classifier for ``ways`` classes; it carries ``arch``, the dict
        that rebuilds it (``bilevel_anil.models.build_model``)."""
        if bn not in self.bn_modes:
            raise UsageError(f"{self.name} supports BatchNorm mode {' or '.join(map(repr, self.bn_modes))} only, "
                             f"not {bn!r}")
        if self.network is not None:
            net = self.network(ways, in_channels, image_size, bn)
        else:
            from .task_batched import TaskBatchedNet

            arch = {"name": self.name, "ways": ways, "in_channels": in_channels, "image_size": image_size, "bn": bn}
            body, features = self.body(in_channels, image_size)
            net = TaskBatchedNet(body, features, ways, arch)
            self._check_features(net.body, features, in_channels, image_size)
        if self.init is not None:
            self.init(net)
        return net

    def _check_features(self, body: nn.Module, features: int, in_channels: int, image_size: int) -> None:
        """The body's output on two blank images is ``[2, features]``, as its spec says (one
        line otherwise, before any training)."""
        try:
            with torch.no_grad():
                out = body(torch.zeros(2, in_channels, image_size, image_size))
        except RuntimeError as exc:
            raise UsageError(f"body {self.name!r} does not run on {in_channels}x{image_size}x{image_size} inputs: "
                             f"{first_line(exc, 160)}") from None
        if out.dim() != 2 or out.shape[1] != features:
            raise UsageError(f"body {self.name!r} gives features of shape {tuple(out.shape[1:])} for "
                             f"{in_channels}x{image_size}x{image_size} inputs, but its builder said {features}: "
                             "return (body, features) with the body ending in [n, features]")
