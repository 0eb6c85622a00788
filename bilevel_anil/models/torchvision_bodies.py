"""torchvision networks as few-shot bodies.

Each entry of ``TORCHVISION_BODIES`` says how to turn one torchvision classifier into a
body: which convolution reads the image (rebuilt for ``in_channels`` inputs), which module is
the classifier (replaced by the identity, so the body ends with the pooled features), and
which weights enum holds its ImageNet weights. Another body is one more entry, e.g.
``"resnet34": TorchvisionBody("resnet34", "ResNet34_Weights")``; ``TORCHVISION_SPECS``
registers each (``--arch``, ``--pretrained imagenet``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torchvision
from torch import nn

from .body_spec import BodySpec


@dataclass(frozen=True)
class TorchvisionBody:
    """How to make a body of ``torchvision.models.<builder>``.

    first_conv: dotted path of the convolution that reads the image; classifier: dotted path
    of the final linear layer (its ``in_features`` is the feature size); weights: the name of
    the weights enum in ``torchvision.models`` (its ``DEFAULT`` is used for ``imagenet``).
    """

    builder: str
    weights: str
    first_conv: str = "conv1"
    classifier: str = "fc"

    def build(self, in_channels: int) -> tuple[nn.Module, int]:
        """A randomly initialised body and its feature size."""
        net = getattr(torchvision.models, self.builder)(weights=None)
        conv = net.get_submodule(self.first_conv)
        if conv.in_channels != in_channels:
            _set_submodule(net, self.first_conv, nn.Conv2d(
                in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, conv.groups, conv.bias is not None))
        features = net.get_submodule(self.classifier).in_features
        _set_submodule(net, self.classifier, nn.Identity())
        return net, features

    def imagenet_weights(self):
        """torchvision's ImageNet weights entry for this body."""
        return getattr(torchvision.models, self.weights).DEFAULT


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


TORCHVISION_BODIES: dict[str, TorchvisionBody] = {
    "resnet18": TorchvisionBody("resnet18", "ResNet18_Weights"),
}


TORCHVISION_SPECS: tuple[BodySpec, ...] = tuple(
    BodySpec(name, f"torchvision's {entry.builder} (classifier removed; --pretrained imagenet loads its weights)",
             body=lambda in_channels, image_size, entry=entry: entry.build(in_channels))
    for name, entry in TORCHVISION_BODIES.items())
