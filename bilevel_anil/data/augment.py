"""Image augmentations on tensors, seeded by a ``torch.Generator``: pretraining's minibatches
(``bilevel_anil.recipes.pretrain_body``) and test-time copies of a support set
(``bilevel_anil.recipes.fine_tune``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rotate_classes(x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Each image turned by a random multiple of 90° and labelled ``4·class + turns``: the
    rotations are classes of their own, as in Omniglot's episodes."""
    turns = torch.randint(0, 4, (len(y),), generator=generator)
    x = x.clone()
    for k in (1, 2, 3):
        pick = turns == k
        if pick.any():
            x[pick] = torch.rot90(x[pick], k, dims=(-2, -1))
    return x, 4 * y + turns


def crop_and_flip(x: Tensor, generator: torch.Generator, flip: bool = True) -> Tensor:
    """Standard augmentation of images ``[B, C, S, S]``: a random ``S×S`` crop of the image
    zero-padded by ``S // 8`` on each side (a shift of up to that many pixels), mirrored
    left-right with probability 1/2 when ``flip``."""
    b, _, s, _ = x.shape
    pad = max(1, s // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = torch.randint(0, 2 * pad + 1, (b,), generator=generator)[:, None] + torch.arange(s)  # [B, S]
    cols = torch.randint(0, 2 * pad + 1, (b,), generator=generator)[:, None] + torch.arange(s)
    if flip:
        mirrored = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    index = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def augmented_copies(x: Tensor, y: Tensor, copies: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Task-batched support sets ``x [B, n, C, S, S]``, ``y [B, n]`` with ``copies`` shifted
    copies of every example appended (mirrored too for colour images; a mirrored character
    may be another character, so grey images are only shifted)."""
    b, n = y.shape
    flat = x.reshape(b * n, *x.shape[2:])
    extra = [crop_and_flip(flat, generator, flip=x.shape[2] == 3).view_as(x) for _ in range(copies)]
    return torch.cat([x, *extra], dim=1), y.repeat(1, copies + 1)
