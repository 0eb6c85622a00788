"""Checkpoint files: written atomically, read without running code. What a file holds is
the schema's (``bilevel_anil.training.schema``); this module only moves dicts to and from disk.

A checkpoint is a dict of tensors and plain Python values (str, int, float, bool, None, lists,
tuples, dicts), written by ``save`` through a temporary file and an atomic rename, so a
crash never leaves a half-written file. ``read`` loads with ``torch.load(weights_only=True)``:
a pickle that would import or call anything else (a crafted ``__reduce__``) is refused with one
line instead of being run. Files of earlier versions of the package stored the numpy random
state as an ``ndarray``; exactly the numpy globals that rebuild a plain array are allow-listed for
them (no object arrays), so they still load.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError, first_line


def _numpy_array_globals() -> list:
    """What ``pickle`` needs to rebuild a plain numpy array, and nothing more."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


class WriteFailed(UsageError):
    """A checkpoint could not be written (a full disk, a quota, a lost mount); the file that was
    at the path before is untouched and no temporary file is left."""

    def __init__(self, path: Path, exc: OSError):
        self.path = path
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(f"no space left on the device writing {path}" if full
                         else f"cannot write {path} ({first_line(exc)})")


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself, or one it was raised while handling), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename.

    A full disk (any ``OSError``) raises ``WriteFailed`` naming the file; the temporary
    file is removed and the previous file at ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        cause = _os_error(exc)  # torch.save turns a failed write into a RuntimeError while closing
        if cause is not None:
            raise WriteFailed(path, cause) from None
        raise


def read(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """The object in a file written by ``torch.save``, loaded without running code from it.

    Raises a one-line ``UsageError`` when the file is missing or unreadable, and when its
    pickle asks for anything but tensors and plain values (it is refused, not run)."""
    path = Path(path)
    if not path.is_file():
        if what == "checkpoint":
            raise UsageError(f"checkpoint {path} does not exist: pass the path of a best.pt or last.pt of a run")
        raise UsageError(f"{what} {path}: no such file")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if any(key in text for key in ("GLOBAL", "Unsupported global", "allowlisted")):  # asks for a function or class
            raise UsageError(f"{what} {path} was refused: its pickle asks to run code or build objects other than "
                             "tensors and plain values (a crafted or foreign file); nothing from it was run") from None
        raise UsageError(f"{what} {path} cannot be read ({type(exc).__name__}): it is damaged or not a "
                         "PyTorch file") from None
