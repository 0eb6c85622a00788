"""A user's own images: ``ROOT/train/<class>/*``, ``ROOT/val/<class>/*``, ``ROOT/test/<class>/*``.

Any image format PIL reads (by file extension; hidden files and other files are skipped),
decoded to ``channels`` (1: grey, 3: RGB) at ``image_size`` × ``image_size``, stored as uint8
and cached like the benchmarks' pixels (keyed by the files' names, sizes and modification
times). Inputs are normalised per channel with the mean and standard deviation of the
training split's pixels, which a run stores in its checkpoint.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, UsageError, first_line
from .class_images import (ClassImages, cache_dir, hash_files, image_pixels, normalize_pixels, read_cache, shown_path,
                           write_cache)
from .spec import DatasetSpec, split_counts

if TYPE_CHECKING:  # for the annotation; image_folder_tasks imports it when called
    from .episodes import ClassificationTasks

SPLITS = ("train", "val", "test")
CACHE_VERSION = 1


def image_extensions() -> set[str]:
    """The file extensions PIL can open (lower case, with the dot)."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def class_files(split_dir: Path) -> tuple[list[str], list[list[Path]]]:
    """The class folders of a split (sorted by name) and each one's image files."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is missing: the folder data set needs train/, val/ and test/, each with one "
                        "folder per class")
    extensions = image_extensions()
    try:
        classes = sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
        files = [sorted(f for f in c.iterdir() if f.is_file() and not f.name.startswith(".")
                        and f.suffix.lower() in extensions) for c in classes]
    except PermissionError as exc:
        raise DataError(f"cannot read {exc.filename}: fix its permissions") from None
    if not classes:
        raise DataError(f"{split_dir} has no class folders: put each class's images in {split_dir}/<class>/")
    empty = [c for c, fs in zip(classes, files) if not fs]
    if empty:
        raise DataError(f"class folder {shown_path(empty[0])} has no images (formats: {', '.join(sorted(extensions)[:8])}, "
                        "...): add images or remove the folder")
    return [c.name for c in classes], files


def _decode(path: Path, channels: int, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return image_pixels(im, channels, size)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {shown_path(path)} ({type(exc).__name__}: {first_line(exc, 80)}): replace "
                        "or remove the file") from None


def _cache_file(split_dir: Path, files: list[Path], channels: int, size: int) -> Optional[Path]:
    digest = hashlib.sha1(b"%d|%s|%d|%d" % (CACHE_VERSION, os.fsencode(split_dir.resolve()), channels, size))
    hash_files(digest, files, lambda f: os.fsencode(f.relative_to(split_dir)))
    folder = cache_dir()
    return None if folder is None else folder / f"folder-{split_dir.name}-{channels}x{size}-{digest.hexdigest()[:16]}.npz"


def load_folder_split(split_dir: Path, channels: int, image_size: int) -> ClassImages:
    """One split as uint8 pixels ``[n, C, S, S]`` (not yet normalised) with its class names."""
    names, files_by_class = class_files(split_dir)
    files = [f for fs in files_by_class for f in fs]
    cache = _cache_file(split_dir, files, channels, image_size)
    pixels = (read_cache(cache) or {}).get("pixels")
    if pixels is None or pixels.shape != (len(files), channels, image_size, image_size) or pixels.dtype != np.uint8:
        pixels = np.stack([_decode(f, channels, image_size) for f in files])
        write_cache(cache, pixels=pixels)
    labels = np.repeat(np.arange(len(names)), [len(fs) for fs in files_by_class])
    return ClassImages(torch.from_numpy(pixels), torch.from_numpy(labels), names)


def pixel_statistics(pixels: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 pixels ``[n, C, S, S]`` scaled to [0, 1]."""
    values = pixels.transpose(0, 1).flatten(1).double() / 255.0
    std = values.std(dim=1).clamp_min(1e-3)  # a constant channel: no division by zero
    return tuple(round(v, 6) for v in values.mean(dim=1).tolist()), tuple(round(v, 6) for v in std.tolist())


def load_image_folder(root: Path, channels: int = 3, image_size: int = 84) -> dict[str, ClassImages]:
    """The three splits of ``root``, normalised with the training split's statistics."""
    root = Path(root)
    if channels not in (1, 3):
        raise UsageError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder: pass a folder holding train/, val/ and test/")
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(f"{root} has no {'/, '.join(missing)}/ folder: the folder data set needs train/, val/ and "
                        "test/, each with one folder per class")
    splits = {s: load_folder_split(root / s, channels, image_size) for s in SPLITS}
    mean, std = pixel_statistics(splits["train"].images)
    for data in splits.values():
        data.mean, data.std = mean, std
    return splits


def image_folder_tasks(root: str | os.PathLike, ways: int, shots: int, queries: int, *, split: str = "train",
                       channels: int = 3, image_size: int = 84, generator: Optional[torch.Generator] = None,
                       seed: Optional[int] = None) -> ClassificationTasks:
    """N-way K-shot tasks from your image folders ``root/<split>/<class>/*``.

    Images in any format PIL reads are decoded to ``channels`` at ``image_size`` (cached),
    and normalised with the training split's per-channel mean and standard deviation.

    Args:
        root: The folder holding ``train/``, ``val/`` and ``test/``, one sub-folder per class.
        ways: Classes per task.
        shots: Support images per class.
        queries: Query images per class.
        split: ``"train"``, ``"val"`` or ``"test"``.
        channels: 3 (RGB) or 1 (grey).
        image_size: The side images are resized to.
        generator: The ``torch.Generator`` the tasks are drawn with.
        seed: A seed for a new generator (instead of ``generator``).

    Returns:
        A sampler whose ``sample(B)`` gives a ``TaskBatch``
        of images ``[B, n, channels, image_size, image_size]``.

    Raises:
        ValueError: One line naming the problem: a missing split folder, an empty class, a
            class with fewer than shots + queries images, an image that does not decode.

    Examples:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> for split in ("train", "val", "test"):
        ...     for c in range(3):
        ...         os.makedirs(f"{root}/{split}/class{c}")
        ...         for i in range(4):
        ...             Image.new("RGB", (20, 20), (80 * c, 10 * i, 0)).save(f"{root}/{split}/class{c}/{i}.png")
        >>> tasks = image_folder_tasks(root, ways=3, shots=1, queries=2, split="val", image_size=16, seed=0)
        >>> tasks.sample(4).support.x.shape
        torch.Size([4, 3, 3, 16, 16])
    """
    from .episodes import ClassificationTasks

    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    data = load_image_folder(Path(root), channels, image_size)[split]
    return ClassificationTasks(data, ways, shots, queries, split_name=split, generator=generator, seed=seed)


def folder_splits(cfg) -> dict[str, ClassImages]:
    """The train/val/test class folders under ``cfg.data_root`` (required)."""
    if cfg.data_root is None:
        raise UsageError("⟨dataset⟩ folder needs ⟨data_root⟩ DIR holding train/, val/ and test/ (one folder per class)")
    return load_image_folder(Path(cfg.data_root), cfg.channels, cfg.image_size)


def checkpoint_input(state: dict, image: Image.Image) -> torch.Tensor:
    """A PIL image as the network's input: the run's channels and size, normalised with the
    training split's statistics stored in the checkpoint."""
    norm, size = state.get("normalization"), state["arch"]["image_size"]
    channels = state["arch"].get("in_channels", 3)
    if not isinstance(norm, dict) or len(norm.get("mean", ())) != channels:
        raise UsageError("this checkpoint does not hold the folder data set's normalisation: it was not written by "
                         "run.py --dataset folder")
    pixels = torch.from_numpy(image_pixels(image, channels, size).copy())
    return normalize_pixels(pixels, tuple(norm["mean"]), tuple(norm["std"]))


FOLDER = DatasetSpec(
    "folder", "your image folders", channels=None, default_image_size=84, stores_normalization=True,
    # the MAML mini-ImageNet protocol (5-way 1-shot, 15 queries, 5 inner steps at lr 0.01), at 20 000
    # outer steps instead of 60 000: a start for a new data set, not a tuned setting
    defaults={"ways": 5, "shots": 1, "queries": 15, "test_queries": 15, "inner_lr": 0.01, "meta_lr": 0.001,
              "meta_batch": 4, "iterations": 20000, "val_every": 500, "val_tasks": 100, "bn": "batch",
              "inner_steps": 5, "test_inner_steps": 10},
    to_input=checkpoint_input, load_splits=folder_splits,
    test_source=lambda cfg, splits: f"{cfg.data_root}/test ({split_counts(splits, {k: k for k in SPLITS})} classes)")
