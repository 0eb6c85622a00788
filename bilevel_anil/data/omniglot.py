"""Omniglot in torchvision's layout: find or download it, decode it once, cache the pixels.

Protocol: meta-training and meta-validation use disjoint characters of the 30 background
alphabets (a fixed split, the same for every run); meta-testing uses the 659 characters of
the 20 evaluation alphabets.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, first_line
from .class_images import ClassImages, cache_dir, hash_files, read_cache, shown_path, write_cache
from .spec import DatasetSpec, data_root

FOLDER = "omniglot-py"
SPLIT_DIRS = {"background": "images_background", "evaluation": "images_evaluation"}
VALIDATION_FRACTION = 0.17  # of the background characters: 164 of 964 validate, 800 meta-train
SPLIT_SEED = 0  # fixes which background characters are held out for validation
CACHE_VERSION = 1


def locate(root: Path, download: bool) -> Path:
    """Return ``root/omniglot-py``, downloading it with torchvision when it is missing."""
    base = root / FOLDER
    if root.exists() and not root.is_dir():
        raise DataError(f"data root {root} is a file, not a folder: pass ⟨data_root⟩ DIR holding {FOLDER}/")
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: create it or pass ⟨data_root⟩ DIR "
                        f"holding {FOLDER}/{SPLIT_DIRS['background']} and {FOLDER}/{SPLIT_DIRS['evaluation']}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"data root {root} is not readable: fix its permissions or pass another ⟨data_root⟩")
    missing = [d for d in SPLIT_DIRS.values() if not (base / d).is_dir()]
    if missing and download:
        try:
            from torchvision.datasets import Omniglot

            for background in (True, False):
                Omniglot(str(root), background=background, download=True)
        except Exception as exc:  # network errors, checksum errors, read-only folders
            reason = first_line(exc)
            raise DataError(
                f"Omniglot is not under {base} and downloading it failed ({reason}); put the "
                f"torchvision layout there ({', '.join(SPLIT_DIRS.values())}) or pass ⟨data_root⟩ DIR"
            ) from None
        missing = [d for d in SPLIT_DIRS.values() if not (base / d).is_dir()]
    if missing:
        raise DataError(f"Omniglot is not under {base} (missing {', '.join(missing)}): put the torchvision "
                        f"layout there or allow the download")
    return base


def _character_dirs(split_dir: Path) -> list[Path]:
    try:
        return sorted(c for a in sorted(split_dir.iterdir()) if a.is_dir() for c in sorted(a.iterdir()) if c.is_dir())
    except PermissionError as exc:
        raise DataError(f"cannot read {exc.filename}: fix its permissions") from None


def resize_gray(image: Image.Image, size: int) -> np.ndarray:
    """Grey-scale pixels ``[size, size]`` (uint8) of an image, resized with Lanczos filtering."""
    return np.asarray(image.convert("L").resize((size, size), Image.LANCZOS), dtype=np.uint8)


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 grey pixels ``[..., S, S]`` to model inputs ``[..., 1, S, S]``: ink 1, paper 0."""
    # np.array copies: the pixels may be a read-only view (a PIL image's buffer), which torch warns about
    return 1.0 - torch.from_numpy(np.array(pixels, dtype=np.float32)).div_(255.0).unsqueeze(-3)


def _decode(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return resize_gray(im, size)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {shown_path(path)} ({type(exc).__name__}): replace the file or re-download "
                        "Omniglot") from None


def _cache_file(split_dir: Path, files: list[Path], size: int) -> Path | None:
    # names as bytes (os.fsencode): a file name that is not UTF-8 is hashed like any other
    digest = hashlib.sha1(b"%d|%s|%d" % (CACHE_VERSION, os.fsencode(split_dir.resolve()), size))
    hash_files(digest, files, lambda f: os.fsencode(f.name))
    folder = cache_dir()
    return None if folder is None else folder / f"omniglot-{split_dir.name}-{size}-{digest.hexdigest()[:16]}.npz"


def load_split(base: Path, split: str, image_size: int = 28) -> ClassImages:
    """Decode one split (``"background"`` or ``"evaluation"``) to a ``ClassImages``.

    The decoded pixels are cached under ``$BILEVEL_ANIL_CACHE`` (default ``~/.cache/bilevel_anil``),
    keyed by the files' names, sizes and modification times, so PNGs are read once.
    """
    split_dir = base / SPLIT_DIRS[split]
    chars = _character_dirs(split_dir)
    files_by_char = [sorted(c.glob("*.png")) for c in chars]
    files = [f for fs in files_by_char for f in fs]
    if not files:
        raise DataError(f"no PNG images under {split_dir}: re-download Omniglot or fix ⟨data_root⟩")
    labels = np.repeat(np.arange(len(chars)), [len(fs) for fs in files_by_char])
    names = [f"{c.parent.name}/{c.name}" for c in chars]
    cache = _cache_file(split_dir, files, image_size)
    pixels = (read_cache(cache) or {}).get("pixels")
    if pixels is None or pixels.shape != (len(files), image_size, image_size) or pixels.dtype != np.uint8:
        pixels = np.stack([_decode(f, image_size) for f in files])
        write_cache(cache, pixels=pixels)
    images = to_input(pixels)
    return ClassImages(images, torch.from_numpy(labels), names)


def load_omniglot(root: Path, download: bool = True, image_size: int = 28) -> dict[str, ClassImages]:
    """The three meta-splits: ``train`` and ``val`` (background characters), ``test`` (evaluation)."""
    base = locate(root, download)
    background = load_split(base, "background", image_size)
    order = np.random.RandomState(SPLIT_SEED).permutation(len(background.classes))
    n_val = max(1, round(VALIDATION_FRACTION * len(order)))
    val_ids = sorted(order[:n_val].tolist())
    train_ids = sorted(order[n_val:].tolist())
    return {
        "train": background.subset(train_ids),
        "val": background.subset(val_ids),
        "test": load_split(base, "evaluation", image_size),
    }


def omniglot_splits(cfg) -> dict[str, ClassImages]:
    """The meta-splits at ``cfg.image_size`` from ``cfg.data_root`` (``./data`` when None)."""
    return load_omniglot(data_root(cfg), download=cfg.download, image_size=cfg.image_size)


def checkpoint_input(state: dict, image: Image.Image) -> torch.Tensor:
    """A PIL image as the trained network's input: grey, inverted, at the run's size."""
    return to_input(resize_gray(image, state["arch"]["image_size"]))


OMNIGLOT = DatasetSpec(
    "omniglot", "Omniglot",
    # 5-way 1-shot Omniglot as in the MAML/ANIL papers (inner lr 0.4, meta-batch 32).
    defaults={"ways": 5, "shots": 1, "queries": 1, "test_queries": 15, "inner_lr": 0.4, "meta_lr": 0.003,
              "meta_batch": 32, "iterations": 1000, "val_every": 100, "val_tasks": 100, "bn": "batch"},
    default_image_size=28, channels=1, decoded_images=1623 * 20, to_input=checkpoint_input,
    load_splits=omniglot_splits, rotations=True,
    test_source=lambda cfg, splits: "the Omniglot evaluation alphabets")
