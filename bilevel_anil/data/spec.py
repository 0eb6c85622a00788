"""What a run needs to know about one data set (``DatasetSpec``); the registry of them is
``bilevel_anil.data.registry``. A spec describes data only: the task suite that pairs a data
set with a network is built in ``bilevel_anil.recipes.suites``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class DatasetSpec:
    """One data set of the command line.

    defaults: the run settings it implies (``None`` fields of the config take these).
    images: image classification (``--arch``, ``--image-size``, ``--bn``, ``--ways`` apply);
        False for a regression family with its own network.
    image_size: the images' fixed size (then ``--image-size`` is refused); None: ``--image-size``
        applies, default ``default_image_size``.
    channels: fixed input channels; None: ``--channels`` applies (default 3).
    decoded_images: how many images are held decoded at ``--image-size`` (memory estimate).
    to_input: ``(checkpoint state, PIL image) -> model input``, for ``bilevel_anil.load``.
    load_splits: ``cfg -> {"train", "val", "test": ClassImages}`` (``cfg`` has ``data_root``,
        ``download``, ``image_size``, ``channels``), for ``run.py pretrain-body`` and ``pipeline``.
    rotations: meta-training adds each class's 90°, 180° and 270° rotations as classes (Omniglot).
    test_source: ``(cfg, splits) -> str``: where a classification run's test tasks come from.
    stores_normalization: the training split's pixel mean and std go into checkpoints (folders).
    """

    name: str
    title: str
    defaults: dict[str, object] = field(default_factory=dict)
    images: bool = True
    image_size: Optional[int] = None
    default_image_size: int = 28
    channels: Optional[int] = 1
    decoded_images: int = 0
    to_input: Optional[Callable[[dict, Any], Any]] = None
    load_splits: Optional[Callable[[Any], dict]] = None
    rotations: bool = False
    test_source: Callable[[Any, dict], str] = lambda cfg, splits: "the meta-test split"
    stores_normalization: bool = False

    def size(self, cfg) -> Optional[int]:
        """The input size a config's run uses."""
        if not self.images:
            return None
        return self.image_size or cfg.image_size or self.default_image_size

    def input_channels(self, cfg) -> int:
        return self.channels or getattr(cfg, "channels", None) or 3


def data_root(cfg) -> Path:
    """``cfg.data_root``, or ``./data`` (created, for the download) when it is not given."""
    if cfg.data_root is not None:
        return Path(cfg.data_root)
    root = Path("data")
    root.mkdir(exist_ok=True)
    return root


def split_counts(splits: dict, names: dict[str, str]) -> str:
    """``"64 meta-train, 16 meta-validation, 20 meta-test"``: the classes of each split."""
    return ", ".join(f"{len(splits[key].classes)} {name}" for key, name in names.items())
