"""Layers over a batch of tasks: inputs are ``[B, n, ...]`` (B tasks, n examples each).

A parameter is either shared by all tasks (its usual shape) or per task (a leading B
dimension). Each op picks the batched kernel for the per-task case, so B tasks run as one
call instead of a Python loop.
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


def conv2d(x: Tensor, weight: Tensor, bias: Tensor, padding: int) -> Tensor:
    """2-D convolution (stride 1) of ``x`` of shape ``[B, n, C, H, W]``.

    Per-task kernels ``[B, C_out, C, k, k]`` run as one grouped convolution. With a single
    input channel that grouped call would be a depthwise convolution, whose CPU kernel
    (Winograd) loses about three digits in the weight gradient; that case is computed as
    an explicit patch matrix product instead, which is cheap for one channel.
    """
    tasks, shots = x.shape[:2]
    if weight.dim() == 4:
        return F.conv2d(x.flatten(0, 1), weight, bias, padding=padding).unflatten(0, (tasks, shots))
    if weight.shape[2] == 1:
        height = x.shape[-2] + 2 * padding - weight.shape[-2] + 1
        patches = F.unfold(x.flatten(0, 1), weight.shape[-2:], padding=padding).unflatten(0, (tasks, shots))
        out = torch.matmul(weight.flatten(2).unsqueeze(1), patches) + bias[:, None, :, None]
        return out.unflatten(-1, (height, -1))
    grouped = x.transpose(0, 1).flatten(1, 2)  # [n, B*C, H, W]
    out = F.conv2d(grouped, weight.flatten(0, 1), bias.flatten(), padding=padding, groups=tasks)
    return out.unflatten(1, (tasks, -1)).transpose(0, 1)


def task_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Batch normalisation with each task's own statistics over its n examples (and H, W).

    This is what a standard ``BatchNorm2d`` in training mode computes when it is called on
    one task's set at a time, as the MAML reference implementation does.
    """
    tasks, shots, channels = x.shape[:3]
    flat = x.transpose(0, 1).flatten(1, 2)  # [n, B*C, H, W]
    w = weight.flatten() if weight.dim() == 2 else weight.repeat(tasks)
    b = bias.flatten() if bias.dim() == 2 else bias.repeat(tasks)
    out = F.batch_norm(flat, None, None, w, b, training=True, eps=eps)
    return out.unflatten(1, (tasks, channels)).transpose(0, 1)


def update_running_stats(x: Tensor, running_mean: Tensor, running_var: Tensor, momentum: float) -> None:
    """Move running per-channel statistics towards those of ``x`` ``[B, n, C, H, W]`` pooled
    over all tasks (``BatchNorm2d``'s update rule: unbiased variance, ``lerp`` by momentum)."""
    with torch.no_grad():
        pooled = x.detach().transpose(0, 2).flatten(1)  # [C, B*n*H*W]
        running_mean.lerp_(pooled.mean(dim=1), momentum)
        running_var.lerp_(pooled.var(dim=1, unbiased=True), momentum)


def running_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
                       eps: float) -> Tensor:
    """Normalise ``x`` ``[B, n, C, H, W]`` with fixed running statistics: each example on its
    own, as ``BatchNorm2d`` does in evaluation mode (weights shared ``[C]`` or per task ``[B, C]``)."""
    scale = torch.rsqrt(running_var + eps)
    w = (weight * scale).unsqueeze(-2) if weight.dim() == 2 else (weight * scale).view(1, 1, -1)
    shift = bias.unsqueeze(-2) if bias.dim() == 2 else bias.view(1, 1, -1)
    w, shift = w.view(*w.shape[:2], -1, 1, 1), shift.view(*shift.shape[:2], -1, 1, 1)
    return (x - running_mean.view(1, 1, -1, 1, 1)) * w + shift


def relu_maxpool(x: Tensor) -> Tensor:
    """ReLU followed by 2x2 max pooling, for ``x`` of shape ``[B, n, C, H, W]``."""
    tasks, shots = x.shape[:2]
    return F.max_pool2d(F.relu(x.flatten(0, 1)), 2).unflatten(0, (tasks, shots))
