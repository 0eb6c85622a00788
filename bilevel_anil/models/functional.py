"""Layers over a batch of tasks: B tasks of n examples each, run as one call per layer.

A parameter is either shared by all tasks (its usual shape) or per task (a leading B
dimension, as MAML's fast weights are); ``per_task`` gives both the per-task shape.

Conv4's task-batched forward keeps its activations in a *task-channel layout*,
``[n, B*C, H, W]``: the example index first, then each task's C channels side by side.
In that layout

- one grouped convolution (``groups=B``) applies each task's kernels to its own channels;
- one ``batch_norm`` call normalises each (task, channel) over that task's n examples and
  H, W, which is what ``BatchNorm2d`` in training mode computes when it is called on one
  task's set at a time, as the MAML reference implementation does;
- ReLU and max pooling act on each channel alone.

So no layer transposes its input: the layout is entered once (``to_task_channels``) and
left once (``task_features``). Measured against the previous forward, which converted
between ``[B, n, C, H, W]`` and this layout around every BatchNorm, in
``benchmarks/next_factors.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight.T + bias`` for ``x`` of shape ``[B, n, d_in]``."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def per_task(value: Tensor, like: Tensor, tasks: int) -> Tensor:
    """``value`` with a leading task dimension: as it is when it has one (one more dimension
    than the module parameter ``like``), else expanded (shared by all tasks, no copy)."""
    return value if value.dim() > like.dim() else value.expand(tasks, *value.shape)


def to_task_channels(x: Tensor) -> Tensor:
    """Images ``[B, n, C, H, W]`` in the task-channel layout ``[n, B*C, H, W]``."""
    return x.transpose(0, 1).flatten(1, 2)


def task_features(h: Tensor, tasks: int) -> Tensor:
    """Features ``[B, n, C*H*W]`` from activations ``[n, B*C, H, W]`` in the task-channel layout."""
    return h.unflatten(1, (tasks, -1)).flatten(2).transpose(0, 1)


def conv2d(h: Tensor, weight: Tensor, bias: Tensor, tasks: int, padding: int) -> Tensor:
    """2-D convolution (stride 1) of ``h`` ``[n, B*C, H, W]`` with each task's kernels
    ``weight`` ``[B, C_out, C, k, k]`` and ``bias`` ``[B, C_out]``; ``[n, B*C_out, H', W']``.

    The kernels run as one grouped convolution. With a single input channel that grouped
    call would be a depthwise convolution, whose CPU kernel (Winograd) loses about three
    digits in the weight gradient; that case is computed as an explicit patch matrix
    product instead, which is cheap for one channel.
    """
    if weight.shape[2] == 1:
        height = h.shape[-2] + 2 * padding - weight.shape[-2] + 1
        patches = F.unfold(h, weight.shape[-2:], padding=padding).unflatten(1, (tasks, -1))  # [n, B, k*k, L]
        out = torch.matmul(weight.flatten(2), patches) + bias.unsqueeze(-1)  # [n, B, C_out, L]
        return out.flatten(1, 2).unflatten(-1, (height, -1))
    return F.conv2d(h, weight.flatten(0, 1), bias.flatten(), padding=padding, groups=tasks)


def task_batch_norm(h: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Batch normalisation of ``h`` ``[n, B*C, H, W]`` with each task's own statistics over
    its n examples and H, W; ``weight`` and ``bias`` are ``[B, C]``."""
    return F.batch_norm(h, None, None, weight.flatten(), bias.flatten(), training=True, eps=eps)


def update_running_stats(h: Tensor, tasks: int, running_mean: Tensor, running_var: Tensor,
                         momentum: float) -> None:
    """Move running per-channel statistics towards those of ``h`` ``[n, B*C, H, W]`` pooled
    over all tasks (``BatchNorm2d``'s update rule: unbiased variance, ``lerp`` by momentum)."""
    with torch.no_grad():
        pooled = h.detach().unflatten(1, (tasks, -1)).flatten(3)  # [n, B, C, H*W]
        var, mean = torch.var_mean(pooled, dim=(0, 1, 3), correction=1)
        running_mean.lerp_(mean, momentum)
        running_var.lerp_(var, momentum)


def running_batch_norm(h: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
                       eps: float) -> Tensor:
    """Normalise ``h`` ``[n, B*C, H, W]`` with fixed running statistics ``[C]``: each example on
    its own, as ``BatchNorm2d`` does in evaluation mode (``weight``, ``bias``: ``[B, C]``)."""
    scale = weight * torch.rsqrt(running_var + eps)
    shift = bias - running_mean * scale
    return h * scale.flatten()[:, None, None] + shift.flatten()[:, None, None]


def relu_maxpool(h: Tensor) -> Tensor:
    """ReLU followed by 2x2 max pooling (each channel on its own, so any layout of channels)."""
    return F.max_pool2d(F.relu(h), 2)
