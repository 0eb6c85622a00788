"""Checkpoint files: written atomically, so a crash never leaves a half-written file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError

FORMAT = 1


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`; a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist: pass the path of a best.pt or last.pt of a run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UsageError(f"checkpoint {path} cannot be read ({type(exc).__name__}): it is damaged or not a checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a bilevel_anil checkpoint (format {FORMAT})")
    return state
