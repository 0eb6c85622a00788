"""The images of a data set's classes, and where decoded pixels are cached."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch


@dataclass
class ClassImages:
    """Images ``[n, C, S, S]`` and their class ids. Omniglot's are model inputs in [0, 1]
    (strokes 1, background 0); natural images are stored as uint8 pixels with the per-channel
    ``mean`` and ``std`` (of pixels in [0, 1]) that ``to_input`` normalises them with."""

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
        """The fewest images of any class (0 for a class whose folder is empty)."""
        return int(self.class_counts().min()) if self.classes else 0

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=len(self.classes))

    def smallest_class(self) -> str:
        return self.classes[int(self.class_counts().argmin())]


def normalize_pixels(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 pixels ``[..., C, S, S]`` to ``(pixels / 255 - mean) / std`` per channel."""
    shape = (len(mean), 1, 1)
    return (pixels.float() / 255.0 - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


def shown_path(path: Path) -> str:
    """A path as text that can be printed whatever bytes its name holds."""
    return os.fsdecode(os.fsencode(path)).encode("utf-8", "backslashreplace").decode("utf-8")


def hash_files(digest, files: list[Path], label) -> None:
    """Add each file's ``label(file)`` (bytes), size and modification time to ``digest`` (a decode
    cache's key); a file that cannot be read (a dangling symlink, a loop, removed meanwhile) is
    one line naming it."""
    from ..errors import DataError, first_line

    for f in files:
        try:
            st = f.stat()
        except OSError as exc:
            raise DataError(f"cannot read image {shown_path(f)} ({first_line(exc)}): remove or replace it") from None
        digest.update(b"%s|%d|%d" % (label(f), st.st_size, st.st_mtime_ns))


def image_pixels(image, channels: int, size: int) -> np.ndarray:
    """A PIL image as uint8 pixels ``[C, size, size]`` (1: grey, 3: RGB), resized bilinearly
    where its size differs."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def cache_dir() -> Path | None:
    """``$BILEVEL_ANIL_CACHE`` (default ``~/.cache/bilevel_anil``), created; None where it cannot
    be (a read-only file system: the data is then decoded on every run). An empty value is
    refused (it would put cache files in the working directory)."""
    value = os.environ.get("BILEVEL_ANIL_CACHE")
    if value is not None and not value.strip():
        from ..errors import UsageError

        raise UsageError("BILEVEL_ANIL_CACHE is empty: unset it (default ~/.cache/bilevel_anil) or name a folder")
    folder = Path(value) if value else Path.home() / ".cache" / "bilevel_anil"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def read_cache(cache: Path | None) -> dict | None:
    """The arrays of a decode cache ``.npz``, or None when there is none or it cannot be read
    (truncated: BadZipFile or EOFError; foreign; unreadable): the caller decodes again."""
    if cache is None or not cache.exists():
        return None
    try:
        with np.load(cache) as z:
            return {name: z[name] for name in z.files}
    except Exception:
        return None


def write_cache(cache: Path | None, **arrays: np.ndarray) -> None:
    """Write a decode cache atomically; on a read-only or full file system the run goes on
    without it (and no temporary file is left where it can be removed)."""
    if cache is None:
        return
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, cache)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
