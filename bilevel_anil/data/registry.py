"""The data sets ``run.py --dataset`` knows, each described once by a
``DatasetSpec``.

The configuration checks, the defaults, the memory estimate, the task suite and the input
transform of a loaded checkpoint all read the spec; nothing else branches on a data set's name.
Adding a data set is one module (its loader, its suite builder and its spec) plus one line in
``DATASETS``.
"""
from __future__ import annotations

from ..errors import UsageError
from .folder import FOLDER
from .natural import NATURAL_SPECS
from .omniglot import OMNIGLOT
from .sine import SINE
from .spec import DatasetSpec

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (OMNIGLOT, SINE, *NATURAL_SPECS, FOLDER)}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; one line naming the choices when there is none."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name]
