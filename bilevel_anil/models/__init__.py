"""Networks with a body/head split and a task-batched functional forward.

Image architectures (``--arch``) are registered in ``BODIES`` (``.registry``), each
by a ``BodySpec`` in its own module: ``conv4`` (the MAML/ANIL Conv4 with max-pooling, 64
filters) and ``conv4-32`` (32 filters, MAML's mini-ImageNet network) have a hand-written
batched forward (``.functional``); ``conv4-strided`` (the iMAML authors' network),
``resnet12`` (MetaOptNet/RFS) and every torchvision body in ``TORCHVISION_BODIES`` run
through the generic per-task path (``TaskBatchedNet``: ``vmap`` over ``functional_call``).
"""
from __future__ import annotations

from torch import nn

from .body_spec import BodySpec
from .conv4 import Conv4
from .meta_trained import TRAIN_BODY, batch_norm_parameters, parameter_counts, set_meta_trained
from .mlp import MLP
from .registry import BODIES, body_spec, image_model, register_body, smallest_image_size
from .task_batched import TaskBatchedNet
from .torchvision_bodies import TORCHVISION_BODIES, TorchvisionBody


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
    return image_model(arch["name"], **kwargs)


__all__ = ["BODIES", "BodySpec", "Conv4", "MLP", "TORCHVISION_BODIES", "TRAIN_BODY", "TaskBatchedNet",
           "TorchvisionBody", "batch_norm_parameters", "body_spec", "build_model", "generic_path", "image_model",
           "parameter_counts", "register_body", "set_meta_trained", "smallest_image_size"]
