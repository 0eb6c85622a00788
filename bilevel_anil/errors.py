"""Errors that reach the user as one line and exit code 2, and the shared checks of numeric flags."""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Callable, Mapping, Optional

if TYPE_CHECKING:
    from pathlib import Path


_ARGUMENT = re.compile(r"⟨(\w+)⟩")
# switches that the Python API spells as a value of an argument
PYTHON_SPELLING = {"first_order": "grad='first_order'", "head_only": "adapt='head'", "resume": "resume=True"}


class _NamesArguments:
    """A message that marks each argument it names as ``⟨name⟩``: ``str()`` shows the Python
    spelling, ``render(name_of)`` another (the command line's flags, ``--inner-lr``), so that
    the library states each rule once and the command line maps the names."""

    def __init__(self, message: object = ""):
        self.template = str(message)
        super().__init__(self.render(lambda name: PYTHON_SPELLING.get(name, name)))

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with each marked argument spelled by ``name_of(python_name)``."""
        return _ARGUMENT.sub(lambda m: name_of(m.group(1)), self.template)


class UsageError(_NamesArguments, ValueError):
    """Bad input from the user: the message says what is wrong and what to do (a ``ValueError``
    for Python callers, one line and exit code 2 on the command line).

    Examples:
        >>> error = UsageError("⟨inner_lr⟩ must be positive")
        >>> str(error), error.render(lambda name: "--" + name.replace("_", "-"))
        ('inner_lr must be positive', '--inner-lr must be positive')
    """

    exit_code = 2


class DataError(UsageError):
    """A data set is missing, unreadable or too small for the requested episodes."""


class TrainingDiverged(UsageError):
    """Meta-training produced a non-finite loss; the checkpoints written before are kept."""


class PeerFailure(_NamesArguments, Exception):
    """Another process of a torchrun run stopped or stopped answering; this one stops too."""

    exit_code = 1


class Interrupted(_NamesArguments, Exception):
    """Meta-training stopped on Ctrl-C after a completed outer step, with ``last.pt`` written."""

    exit_code = 130


def first_line(exc: BaseException, limit: Optional[int] = None) -> str:
    """An exception's message reduced to its first line (at most ``limit`` characters), or
    its type's name when it has none: the reason part of a one-line error."""
    text = str(exc).strip()
    return (text.splitlines()[0][:limit] if text else "") or type(exc).__name__


def load_failure(exc: BaseException) -> str:
    """The line that names what did not fit in a ``load_state_dict`` error (a size mismatch, a
    missing or unexpected key), else the exception's first line; at most 200 characters."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return next((line for line in lines if "mismatch" in line or " key" in line), first_line(exc))[:200]


FLOAT32_MAX = 3.4028234663852886e38  # the tensors are float32: a larger step or λ overflows in the first update


def require_positive(label: str, value: object, *, integer: bool = False, zero: bool = False) -> None:
    """One line unless ``value`` is a positive integer (``integer``) or a positive finite number
    no larger than float32 can hold (so that a first optimiser update cannot overflow);
    ``zero`` admits 0. ``label`` is how the user gave it: ``--inner-lr`` or ``inner_lr``."""
    if integer:
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= (0 if zero else 1)):
            raise UsageError(f"{label} must be {'an integer >= 0' if zero else 'a positive integer'}, got {value!r}")
        return
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value >= 0 if zero else value > 0)):
        raise UsageError(f"{label} must be {'a number >= 0' if zero else 'a positive number'}, got {value!r}")
    if value > FLOAT32_MAX:
        raise UsageError(f"{label} {value:g} is larger than float32 can hold ({FLOAT32_MAX:.3g}): give a smaller value")


def require_positive_integers(flags: Mapping[str, Optional[int]]) -> None:
    """``require_positive`` for each flag (name without ``--``) that is set (not None)."""
    for name, value in flags.items():
        if value is not None:
            require_positive(f"--{name}", value, integer=True)


def require_positive_numbers(flags: Mapping[str, Optional[float]]) -> None:
    """``require_positive`` for each flag (name without ``--``) that is set (not None)."""
    for name, value in flags.items():
        if value is not None:
            require_positive(f"--{name}", value)


SEED_LIMIT = 2 ** 32  # numpy's seeds are 0 .. 2**32 - 1


def require_seed(seed: Optional[int]) -> None:
    """One line unless ``seed`` is an integer numpy, torch and Python's ``random`` all accept."""
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"--seed must be between 0 and {SEED_LIMIT - 1}, got {seed}")


def require_device(device: Optional[str]) -> None:
    """One line unless ``device`` is None, ``cpu``, ``cuda`` or ``cuda:N`` with CUDA present."""
    if device is None:
        return
    index = device[5:] if device.startswith("cuda:") else ""
    if device not in ("cpu", "cuda") and not index.isdigit():
        raise UsageError(f"unknown device {device!r}: use cpu or cuda")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device} was asked for but no CUDA device is available: use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def _first_existing(path: "Path") -> "Path":
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_output(value: Optional[str], kind: str = "folder", flag: str = "--out") -> None:
    """One line unless ``value`` (None: the default) names a folder (``kind="folder"``) or a file
    (``kind="file"``) that can be written: not empty, not under a file, not where a file/folder of
    the other kind is, on a writable file system. Checked before any data is loaded."""
    import os
    from pathlib import Path

    if value is None:
        return
    if not str(value).strip():
        raise UsageError(f"{flag} is empty: give a {kind} name")
    path = Path(value)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {value} is a file, not a folder: choose another {flag}")
    if kind == "file" and path.is_dir():
        raise UsageError(f"{flag} {value} is a folder: give a file name, e.g. {path / 'body.pt'}")
    existing = _first_existing(path if kind == "folder" else path.parent)
    if not existing.is_dir():
        raise UsageError(f"{flag} {value} is under {existing}, which is a file: choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {value}: {existing} is not writable (read-only or no permission): choose "
                         f"another {flag}")
