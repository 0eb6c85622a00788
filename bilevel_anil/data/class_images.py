"""The images of a data set's classes, and where decoded pixels are cached."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch


@dataclass
class ClassImages:
    """Images ``[n, C, S, S]`` and their class ids. Omniglot's are model inputs in [0, 1]
    (strokes 1, background 0); natural images are stored as uint8 pixels with the per-channel
    ``mean`` and ``std`` (of pixels in [0, 1]) that :meth:`to_input` normalises them with."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None

    def subset(self, class_ids: list[int]) -> "ClassImages":
        ids = torch.tensor(class_ids, dtype=torch.long)
        keep = torch.isin(self.labels, ids)
        remap = torch.full((len(self.classes),), -1, dtype=torch.long)
        remap[ids] = torch.arange(len(class_ids))
        return ClassImages(self.images[keep], remap[self.labels[keep]], [self.classes[i] for i in class_ids],
                           self.mean, self.std)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """Stored images ``[..., C, S, S]`` as model inputs (float; normalised where stored as uint8)."""
        return images if images.dtype != torch.uint8 else normalize_pixels(images, self.mean, self.std)

    def images_per_class(self) -> int:
        return int(torch.bincount(self.labels).min()) if len(self.labels) else 0


def normalize_pixels(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 pixels ``[..., C, S, S]`` to ``(pixels / 255 - mean) / std`` per channel."""
    shape = (len(mean), 1, 1)
    return (pixels.float() / 255.0 - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


def cache_dir() -> Path | None:
    """``$BILEVEL_ANIL_CACHE`` (default ``~/.cache/bilevel_anil``), created; None where it cannot be."""
    folder = Path(os.environ.get("BILEVEL_ANIL_CACHE", Path.home() / ".cache" / "bilevel_anil"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder
