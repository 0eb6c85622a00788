"""Networks with a body/head split and a task-batched functional forward.

Image architectures (``--arch``): ``conv4`` (the MAML/ANIL Conv4 with max-pooling, 64
filters) and ``conv4-32`` (the same with 32 filters, MAML's mini-ImageNet network) have a
hand-written batched forward (:mod:`.functional`); ``conv4-strided`` (the iMAML authors'
network), ``resnet12`` (MetaOptNet/RFS) and every torchvision body in
:data:`TORCHVISION_BODIES` run through the generic per-task path (:class:`TaskBatchedNet`:
``vmap`` over ``functional_call``).
"""
from __future__ import annotations

from torch import nn

from .conv4 import Conv4
from .meta_trained import TRAIN_BODY, batch_norm_parameters, parameter_counts, set_meta_trained
from .mlp import MLP
from .resnet12 import resnet12_body
from .strided_conv import init_like_imaml, strided_conv_body
from .task_batched import TaskBatchedNet
from .torchvision_bodies import TORCHVISION_BODIES, TorchvisionBody

# conv4-32: MAML's mini-ImageNet network (Conv4 with 32 filters); resnet12: MetaOptNet/RFS
IMAGE_ARCHS = ("conv4", "conv4-32", "conv4-strided", "resnet12", *TORCHVISION_BODIES)
# The smallest --image-size each body runs on (four 2x2 max-pools leave nothing of a smaller
# input); 8 for the others (the package's floor). tests/test_bodies.py checks each against a forward.
MIN_IMAGE_SIZE = {"conv4": 16, "conv4-32": 16, "resnet12": 16}


def smallest_image_size(arch: str) -> int:
    """The smallest square input ``arch`` accepts (see :data:`MIN_IMAGE_SIZE`)."""
    return MIN_IMAGE_SIZE.get(arch, 8)


def image_model(name: str, ways: int, in_channels: int = 1, image_size: int = 28, bn: str = "batch") -> nn.Module:
    """A randomly initialised classifier ``name`` for ``ways`` classes."""
    if name in ("conv4", "conv4-32"):
        return Conv4(ways, in_channels=in_channels, hidden=32 if name == "conv4-32" else 64, image_size=image_size,
                     bn=bn)
    if name not in IMAGE_ARCHS:
        raise ValueError(f"unknown architecture {name!r}: choose one of {', '.join(IMAGE_ARCHS)}")
    if bn != "batch":
        raise ValueError(f"{name} supports BatchNorm mode 'batch' only (each set's own statistics)")
    arch = {"name": name, "ways": ways, "in_channels": in_channels, "image_size": image_size, "bn": "batch"}
    if name == "conv4-strided":
        net = TaskBatchedNet(*strided_conv_body(in_channels, image_size), ways, arch)
        init_like_imaml(net)
        return net
    if name == "resnet12":
        return TaskBatchedNet(*resnet12_body(in_channels), ways, arch)
    return TaskBatchedNet(*TORCHVISION_BODIES[name].build(in_channels), ways, arch)


def generic_path(model: nn.Module) -> TaskBatchedNet:
    """The same network (sharing its modules and parameters) run through the generic per-task
    path instead of its hand-written one: for benchmarks and tests of that path."""
    net = TaskBatchedNet(model.body, model.head.in_features, model.head.out_features, dict(model.arch))
    net.head = model.head
    return net


def build_model(arch: dict) -> nn.Module:
    """Rebuild a network from the ``arch`` dict it carries (as stored in checkpoints)."""
    kwargs = {k: v for k, v in arch.items() if k != "name"}
    if arch["name"] == "conv4":
        return Conv4(**kwargs)
    if arch["name"] == "mlp":
        kwargs["hidden"] = tuple(kwargs["hidden"])
        return MLP(**kwargs)
    if arch["name"] in IMAGE_ARCHS:
        return image_model(arch["name"], **kwargs)
    raise ValueError(f"unknown architecture {arch['name']!r}")


__all__ = ["Conv4", "IMAGE_ARCHS", "MLP", "TORCHVISION_BODIES", "TRAIN_BODY", "TaskBatchedNet", "TorchvisionBody",
           "batch_norm_parameters", "build_model", "generic_path", "image_model", "parameter_counts",
           "set_meta_trained"]
