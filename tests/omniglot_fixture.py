"""A small Omniglot the tests draw themselves, in torchvision's on-disk layout.

Each character is a few random pen strokes (smooth polylines through 3-5 control points);
each of its 20 drawings moves every control point by a few pixels, shifts the whole
character and varies the pen width, the way Omniglot's 20 drawers vary one character.
Files are 105x105 1-bit PNGs named like the real ones, so the package reads them through
its real loading code (locate, decode, resize, cache, meta-splits). Telling 5 such
characters apart from one drawing each is not solved at initialisation: a short
meta-training run has to lift accuracy from chance.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 105
DRAWINGS = 20
# (alphabets, characters per alphabet) for each split
LAYOUT = {"images_background": (3, 12), "images_evaluation": (2, 10)}


def _strokes(rng: np.random.RandomState) -> list[np.ndarray]:
    strokes = []
    for _ in range(rng.randint(2, 5)):
        start = rng.uniform(18, 87, size=2)
        steps = rng.normal(0, 18, size=(rng.randint(2, 5), 2))
        strokes.append(np.clip(start + np.cumsum(np.vstack([[0, 0], steps]), axis=0), 10, 95))
    return strokes


def _smooth(points: np.ndarray, per_segment: int = 8) -> list[tuple[float, float]]:
    """Catmull-Rom-like smoothing through the control points (pen strokes are curves)."""
    if len(points) < 3:
        return [tuple(p) for p in points]
    padded = np.vstack([points[0], points, points[-1]])
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        for t in np.linspace(0, 1, per_segment, endpoint=False):
            out.append(tuple(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)))
    out.append(tuple(points[-1]))
    return out


def _draw(strokes: list[np.ndarray], rng: np.random.RandomState) -> Image.Image:
    image = Image.new("1", (SIZE, SIZE), 1)  # white paper, black ink, like the real files
    pen = ImageDraw.Draw(image)
    shift = rng.uniform(-4, 4, size=2)
    width = int(rng.randint(2, 5))
    for stroke in strokes:
        jittered = stroke + shift + rng.normal(0, 3.0, size=stroke.shape)
        pen.line(_smooth(jittered), fill=0, width=width, joint="curve")
    return image


def write_omniglot_fixture(root: Path, seed: int = 0) -> Path:
    """Write ``root/omniglot-py/{images_background,images_evaluation}`` and return ``root``."""
    rng = np.random.RandomState(seed)
    character_id = 0
    for split, (alphabets, characters) in LAYOUT.items():
        for a in range(alphabets):
            for c in range(characters):
                character_id += 1
                folder = root / "omniglot-py" / split / f"Fixture_{split[7:]}_{a:02d}" / f"character{c + 1:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                strokes = _strokes(rng)
                for d in range(DRAWINGS):
                    _draw(strokes, rng).save(folder / f"{character_id:04d}_{d + 1:02d}.png")
    return root


def expected_counts() -> dict[str, int]:
    """Characters per meta-split that the package's split rule gives on this fixture."""
    background = LAYOUT["images_background"][0] * LAYOUT["images_background"][1]
    validation = max(1, round(0.17 * background))
    evaluation = LAYOUT["images_evaluation"][0] * LAYOUT["images_evaluation"][1]
    return {"train": background - validation, "val": validation, "test": evaluation}
