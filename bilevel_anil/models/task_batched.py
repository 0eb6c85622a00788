"""Any body as a task-batched network: ``torch.func.vmap`` over tasks of ``functional_call``.

A body is an ``nn.Module`` from images ``[n, C, H, W]`` to features ``[n, D]``; the head is a
linear layer of ``ways`` outputs. ``body_forward`` runs B tasks ``[B, n, ...]`` in one
vectorised call, without a Python loop over tasks: parameters are shared (their usual shape)
or per task (a leading B dimension, as MAML's fast weights are), and every BatchNorm layer
normalises each task's set with that set's own statistics (BatchNorm layers here keep no
running statistics; see ``batch_statistics_only``).
"""
from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from ..core.network import split_task_params
from . import functional as TF


def batch_statistics_only(body: nn.Module) -> nn.Module:
    """Make every BatchNorm layer of ``body`` normalise with the statistics of the batch it is
    given, in training and in evaluation mode (no running statistics: a task's support and
    query sets are normalised separately, as Conv4's ``bn="batch"`` mode does)."""
    return replace_all_batch_norm_modules_(body)


class TaskBatchedNet(nn.Module):
    """``body`` (images to ``features``-dimensional vectors) and a new linear head.

    arch: the dict that rebuilds this network (``bilevel_anil.models.build_model``).
    """

    def __init__(self, body: nn.Module, features: int, ways: int, arch: dict):
        super().__init__()
        self.body = batch_statistics_only(body)
        self.head = nn.Linear(features, ways)
        self.arch = arch
        self.bn_mode = "batch"
        self._dims = {name: p.dim() for name, p in self.body.named_parameters()}

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def body_forward(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Features ``[B, n, D]`` of images ``[B, n, C, H, W]``; ``params`` by full name
        (``body.…``), each shared or per task."""
        shared, per_task = split_task_params(params, self._dims, "body.")

        def one_task(task_params: dict[str, Tensor], images: Tensor) -> Tensor:
            return functional_call(self.body, {**shared, **task_params}, (images,)).flatten(1)

        return vmap(one_task)(per_task, x)

    def head_forward(self, params: Mapping[str, Tensor], features: Tensor) -> Tensor:
        """Logits ``[B, n, ways]`` from features ``[B, n, D]``."""
        return TF.linear(features, params["head.weight"], params["head.bias"])
