"""Tiny copies of the natural-image benchmarks in learn2learn's on-disk formats (random pixels).

Each split gets a few classes of ``IMAGES`` images; the class counts differ per split so that
a test can tell the splits apart. The formats are those ``learn2learn.vision.datasets`` 0.2.0
reads: mini-ImageNet cache pickles, tiered-ImageNet PNG-bytes and label pickles, FC100
pickles, and CIFAR-FS's class folders with Bertinetto's split files.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

IMAGES = 8
CLASSES = {"train": 6, "val": 5, "test": 7}
L2L_MODE = {"train": "train", "val": "validation", "test": "test"}


def _pixels(rng, n: int, size: int) -> np.ndarray:
    return rng.randint(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def write_mini_imagenet(root: Path, rng) -> None:
    for split, k in CLASSES.items():
        images = _pixels(rng, k * IMAGES, 84)
        classes = {f"n{split}{c:04d}": list(range(c * IMAGES, (c + 1) * IMAGES)) for c in range(k)}
        with open(root / f"mini-imagenet-cache-{L2L_MODE[split]}.pkl", "wb") as fh:
            pickle.dump({"image_data": images, "class_dict": classes}, fh)


def write_tiered_imagenet(root: Path, rng) -> None:
    folder = root / "tiered-imagenet"
    folder.mkdir(parents=True, exist_ok=True)
    for split, k in CLASSES.items():
        images = [_png(a) for a in _pixels(rng, k * IMAGES, 84)]
        specific = np.repeat(np.arange(k), IMAGES)
        with open(folder / f"{split}_images_png.pkl", "wb") as fh:
            pickle.dump(images, fh)
        with open(folder / f"{split}_labels.pkl", "wb") as fh:
            pickle.dump({"label_specific": specific, "label_general": specific // 2,
                         "label_specific_str": [f"s{i}" for i in specific]}, fh)


def write_fc100(root: Path, rng) -> None:
    for split, k in CLASSES.items():
        with open(root / f"FC100_{split}.pickle", "wb") as fh:
            pickle.dump({"data": _pixels(rng, k * IMAGES, 32), "labels": np.repeat(np.arange(k), IMAGES).tolist()},
                        fh, protocol=2)


def write_cifar_fs(root: Path, rng) -> None:
    base = root / "cifarfs" / "cifar100"
    (base / "splits" / "bertinetto").mkdir(parents=True, exist_ok=True)
    for split, k in CLASSES.items():
        names = [f"{split}_class_{c}" for c in range(k)]
        (base / "splits" / "bertinetto" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            (base / "data" / name).mkdir(parents=True, exist_ok=True)
            for i, array in enumerate(_pixels(rng, IMAGES, 32)):
                Image.fromarray(array).save(base / "data" / name / f"{i}.png")


WRITERS = {"mini-imagenet": write_mini_imagenet, "tiered-imagenet": write_tiered_imagenet,
           "fc100": write_fc100, "cifar-fs": write_cifar_fs}


def write_fixture(name: str, root: Path, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    WRITERS[name](root, np.random.RandomState(seed))
    return root
