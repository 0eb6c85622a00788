"""The image networks ``--arch`` knows, each described once by a
``BodySpec``.

The configuration checks, ``--help``, ``run.py pretrain-body`` and the rebuilding of a
checkpoint's network all read the spec; nothing else branches on a body's name. Adding a body
is one module (its builder and its spec) plus one line in ``BODIES``, or, from outside the
package, ``register_body``.
"""
from __future__ import annotations

from torch import nn

from .body_spec import BodySpec
from .conv4 import CONV4, CONV4_32
from .resnet12 import RESNET12
from .strided_conv import CONV4_STRIDED
from .torchvision_bodies import TORCHVISION_SPECS

BODIES: dict[str, BodySpec] = {s.name: s for s in (CONV4, CONV4_32, CONV4_STRIDED, RESNET12, *TORCHVISION_SPECS)}


def body_spec(name: str) -> BodySpec:
    """The spec of ``name``; one line naming the choices when there is none."""
    if name not in BODIES:
        raise ValueError(f"unknown architecture {name!r}: choose one of {', '.join(BODIES)}")
    return BODIES[name]


def register_body(spec: BodySpec) -> BodySpec:
    """Make ``spec`` available as ``--arch spec.name`` (and to ``image_model``, and to the
    loading of checkpoints of it) in this process.

    Example:
        >>> from torch import nn
        >>> spec = register_body(BodySpec("doc-tiny", "one convolution", body=lambda c, s: (
        ...     nn.Sequential(nn.Conv2d(c, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 8)))
        >>> image_model("doc-tiny", 5).head
        Linear(in_features=8, out_features=5, bias=True)
        >>> _ = BODIES.pop("doc-tiny")
    """
    if not isinstance(spec, BodySpec):
        raise TypeError(f"register_body takes a BodySpec, got {type(spec).__name__}")
    if spec.name in BODIES and BODIES[spec.name] is not spec:
        raise ValueError(f"a body named {spec.name!r} is already registered: choose another name")
    BODIES[spec.name] = spec
    return spec


def smallest_image_size(arch: str) -> int:
    """The smallest square input ``arch`` accepts (its spec's ``min_image_size``)."""
    return body_spec(arch).min_image_size


def image_model(name: str, ways: int, in_channels: int = 1, image_size: int = 28, bn: str = "batch") -> nn.Module:
    """A randomly initialised classifier ``name`` for ``ways`` classes."""
    return body_spec(name).build(ways, in_channels, image_size, bn)
