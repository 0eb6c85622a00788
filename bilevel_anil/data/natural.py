"""Natural-image few-shot benchmarks read through learn2learn's dataset classes.

mini-ImageNet, tiered-ImageNet, CIFAR-FS and FC100 in the on-disk formats of
``learn2learn.vision.datasets`` (0.2.0), each with its standard meta-train / meta-validation /
meta-test class split. The decoded pixels are cached as uint8 (like Omniglot's), keyed by
the source files' names, sizes and modification times; episodes are normalised per channel
when they are drawn. No augmentation.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, first_line
from .class_images import ClassImages, cache_dir, image_pixels, normalize_pixels, read_cache, write_cache
from .spec import DatasetSpec, data_root, split_counts
from .safe_pickle import restricted_pickle

CACHE_VERSION = 1
IMAGENET_MEAN, IMAGENET_STD = (0.4721, 0.4533, 0.4100), (0.2772, 0.2677, 0.2845)  # mini-ImageNet's pixels
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)  # CIFAR-100's pixels
MODES = {"train": "train", "val": "validation", "test": "test"}  # our split -> learn2learn's mode


@dataclass(frozen=True)
class NaturalDataset:
    """One benchmark: its learn2learn class, files, image size and normalisation."""

    title: str
    l2l_class: str
    files: tuple[str, ...]  # what must be under the data root (shown when it is missing)
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def split_files(self, root: Path, split: str) -> list[Path]:
        """The files one split is read from."""
        mode = MODES[split]
        short = "val" if mode == "validation" else mode
        return [root / f.format(mode=mode, short=short) for f in self.files if "{" in f] or \
            [root / f for f in self.files]


# The standard splits (meta-train / meta-validation / meta-test classes) come with the files.
NATURAL_DATASETS: dict[str, NaturalDataset] = {
    # Vinyals et al. 2016, split of Ravi & Larochelle 2017: 64 / 16 / 20 classes
    "mini-imagenet": NaturalDataset(
        "mini-ImageNet", "MiniImagenet", ("mini-imagenet-cache-{mode}.pkl",), 84, IMAGENET_MEAN, IMAGENET_STD),
    # Ren et al. 2018: 351 / 97 / 160
    "tiered-imagenet": NaturalDataset(
        "tiered-ImageNet", "TieredImagenet", ("tiered-imagenet/{short}_images_png.pkl",
                                              "tiered-imagenet/{short}_labels.pkl"), 84, IMAGENET_MEAN, IMAGENET_STD),
    # Bertinetto et al. 2019: 64 / 16 / 20
    "cifar-fs": NaturalDataset(
        "CIFAR-FS", "CIFARFS", ("cifarfs/cifar100/data", "cifarfs/cifar100/splits/bertinetto"), 32,
        CIFAR100_MEAN, CIFAR100_STD),
    # Oreshkin et al. 2018 (TADAM): 60 / 20 / 20
    "fc100": NaturalDataset("FC100", "FC100", ("FC100_{short}.pickle",), 32, CIFAR100_MEAN, CIFAR100_STD),
}


def _l2l_dataset(spec: NaturalDataset, root: Path, mode: str, download: bool):
    """learn2learn's dataset object, its pickles read by the restricted unpickler (safe_pickle.py)."""
    with contextlib.redirect_stderr(io.StringIO()):  # gym's banner on first import
        from learn2learn.vision import datasets
        from learn2learn.vision.datasets import fc100, mini_imagenet, tiered_imagenet
    with contextlib.redirect_stdout(io.StringIO()), restricted_pickle(fc100, mini_imagenet, tiered_imagenet):
        return getattr(datasets, spec.l2l_class)(root=str(root), mode=mode, download=download)


def _arrays(spec: NaturalDataset, dataset) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixels ``[n, 3, S, S]`` and integer labels of a learn2learn dataset object."""
    name = spec.l2l_class
    if name == "MiniImagenet":
        pixels, labels = dataset.x.clamp(0, 255).to(torch.uint8).numpy(), np.asarray(dataset.y, dtype=np.int64)
    elif name == "FC100":
        pixels = np.asarray(dataset.images, dtype=np.uint8).transpose(0, 3, 1, 2)
        labels = np.asarray(dataset.labels, dtype=np.int64)
    elif name == "TieredImagenet":
        pixels = np.stack([_decode(lambda i=i: io.BytesIO(dataset.images[i]), spec) for i in range(len(dataset))])
        labels = np.asarray(dataset.labels, dtype=np.int64)
    else:  # CIFARFS: a torchvision ImageFolder of PNG files
        pixels = np.stack([_decode(lambda p=p: p, spec) for p, _ in dataset.samples])
        labels = np.asarray(dataset.targets, dtype=np.int64)
    if pixels.ndim != 4 or pixels.shape[1:] != (3, spec.image_size, spec.image_size):
        raise ValueError(f"images of shape {tuple(pixels.shape[1:])}, expected (3, {spec.image_size}, "
                         f"{spec.image_size})")
    if len(labels) != len(pixels):
        raise ValueError(f"{len(labels)} labels for {len(pixels)} images")
    return pixels, labels


def _decode(open_source: Callable[[], object], spec: NaturalDataset) -> np.ndarray:
    with Image.open(open_source()) as im:
        return image_pixels(im, 3, spec.image_size)


def _cache_file(spec: NaturalDataset, files: list[Path], split: str) -> Path | None:
    digest = hashlib.sha1(f"{CACHE_VERSION}|{spec.l2l_class}|{split}".encode())
    for f in files:
        for g in ([f] if f.is_file() else sorted(p for p in f.rglob("*") if p.is_file())):
            st = g.stat()
            digest.update(b"%s|%d|%d" % (os.fsencode(g.resolve()), st.st_size, st.st_mtime_ns))
    folder = cache_dir()
    return None if folder is None else folder / f"{spec.l2l_class.lower()}-{split}-{digest.hexdigest()[:16]}.npz"


def load_split(spec: NaturalDataset, root: Path, split: str, download: bool) -> ClassImages:
    """One split (``train``, ``val``, ``test``), decoded through learn2learn and cached."""
    files = spec.split_files(root, split)
    missing = [str(f) for f in files if not f.exists()]
    if missing and not download:
        raise DataError(f"{spec.title} is not under {root} (missing {', '.join(missing)}): put learn2learn's "
                        f"files there or allow the download")
    cache = None if missing else _cache_file(spec, files, split)
    cached = read_cache(cache) or {}
    pixels, labels = cached.get("pixels"), cached.get("labels")
    if (pixels is not None and labels is not None and pixels.dtype == np.uint8
            and pixels.shape[1:] == (3, spec.image_size, spec.image_size) and labels.shape == (len(pixels),)):
        return _class_images(pixels, labels, spec)
    try:
        dataset = _l2l_dataset(spec, root, MODES[split], download)
    except Exception as exc:  # network errors without a copy; truncated or foreign files with one
        reason = first_line(exc, 120)
        if missing or any(not f.exists() for f in files):
            raise DataError(f"{spec.title} is not under {root} (expected {', '.join(str(f) for f in files)}) and "
                            f"downloading it failed ({reason}): put learn2learn's files there or pass ⟨data_root⟩ DIR"
                            ) from None
        raise DataError(f"cannot read {spec.title}'s {split} split from {', '.join(str(f) for f in files)} "
                        f"({type(exc).__name__}: {reason}): the files are damaged or not in learn2learn's format; "
                        f"download them again") from None
    if missing:  # the files were downloaded just now: key the cache by them
        cache = _cache_file(spec, files, split)
    try:
        pixels, labels = _arrays(spec, dataset)
    except (OSError, UnidentifiedImageError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        reason = first_line(exc, 120)
        raise DataError(f"cannot read {spec.title}'s {split} split from {', '.join(str(f) for f in files)} "
                        f"({reason}): the files are damaged or not in learn2learn's format; download them again"
                        ) from None
    write_cache(cache, pixels=pixels, labels=labels)
    return _class_images(pixels, labels, spec)


def _class_images(pixels: np.ndarray, labels: np.ndarray, spec: NaturalDataset) -> ClassImages:
    ids, dense = np.unique(labels, return_inverse=True)
    return ClassImages(torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(dense.astype(np.int64)),
                       [str(i) for i in ids], mean=spec.mean, std=spec.std)


def load_natural(name: str, root: Path, download: bool = True) -> dict[str, ClassImages]:
    """The three meta-splits of ``name`` (a key of ``NATURAL_DATASETS``) under ``root``."""
    spec = NATURAL_DATASETS[name]
    if root.exists() and not root.is_dir():
        raise DataError(f"data root {root} is a file, not a folder: pass ⟨data_root⟩ DIR")
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: create it or pass ⟨data_root⟩ DIR holding "
                        f"{', '.join(spec.files)}")
    return {split: load_split(spec, root, split, download) for split in MODES}


MAML_MINI_IMAGENET: dict[str, object] = {
    "ways": 5, "shots": 1, "queries": 15, "test_queries": 15, "inner_lr": 0.01, "meta_lr": 0.001, "meta_batch": 4,
    "iterations": 60000, "val_every": 1000, "val_tasks": 100, "bn": "batch", "inner_steps": 5,
    "test_inner_steps": 10, "arch": "conv4-32"}

# MAML paper, section 5.2 and cbfinn/maml's mini-ImageNet command: Conv4 with 32 filters,
# 5-way 1-shot, 15 queries per class, 5 inner steps at lr 0.01 (10 at test), meta-batch 4,
# Adam 1e-3, 60 000 outer steps. tiered-ImageNet and CIFAR-FS take the same settings.
# learn2learn's ANIL example on FC100 (examples/vision/anil_fc100.py): Conv4 with 64
# filters (256 features at 32x32), 5-way 5-shot, 5 queries per class, 5 inner steps at
# lr 0.1, meta-batch 32, Adam 1e-3, 10 000 outer steps.
NATURAL_DEFAULTS = {
    "mini-imagenet": MAML_MINI_IMAGENET, "tiered-imagenet": MAML_MINI_IMAGENET, "cifar-fs": MAML_MINI_IMAGENET,
    "fc100": {"ways": 5, "shots": 5, "queries": 5, "test_queries": 5, "inner_lr": 0.1, "meta_lr": 0.001,
              "meta_batch": 32, "iterations": 10000, "val_every": 500, "val_tasks": 100, "bn": "batch",
              "inner_steps": 5, "arch": "conv4"},
}


def natural_splits(cfg) -> dict[str, ClassImages]:
    """The standard class splits of ``cfg.dataset`` from ``cfg.data_root`` (``./data`` when None)."""
    return load_natural(cfg.dataset, data_root(cfg), download=cfg.download)


def rgb_input(image: Image.Image, size: int, mean: tuple, std: tuple) -> torch.Tensor:
    """A PIL image as RGB pixels at ``size`` x ``size``, normalised per channel."""
    return normalize_pixels(torch.from_numpy(image_pixels(image, 3, size).copy()), mean, std)


_SPLIT_NAMES = {"train": "meta-train", "val": "meta-validation", "test": "meta-test"}


def _spec(name: str, dataset: NaturalDataset) -> DatasetSpec:
    return DatasetSpec(name, dataset.title, defaults=NATURAL_DEFAULTS[name], image_size=dataset.image_size,
                       channels=3, to_input=lambda state, image: rgb_input(image, dataset.image_size, dataset.mean,
                                                                           dataset.std),
                       load_splits=natural_splits,
                       test_source=lambda cfg, splits: f"the {dataset.title} meta-test classes "
                       f"({split_counts(splits, _SPLIT_NAMES)} classes)")


NATURAL_SPECS = [_spec(name, dataset) for name, dataset in NATURAL_DATASETS.items()]

__all__ = ["NATURAL_DATASETS", "NATURAL_SPECS", "NaturalDataset", "load_natural"]
