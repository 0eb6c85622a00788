"""Errors that reach the user as one line and exit code 2, and the shared checks of numeric flags."""
from __future__ import annotations

import math
from typing import Mapping, Optional


class UsageError(ValueError):
    """Bad input from the user: the message says what is wrong and what to do (a ``ValueError``
    for Python callers, one line and exit code 2 on the command line)."""

    exit_code = 2


class DataError(UsageError):
    """A data set is missing, unreadable or too small for the requested episodes."""


class TrainingDiverged(UsageError):
    """Meta-training produced a non-finite loss; the checkpoints written before are kept."""


class PeerFailure(Exception):
    """Another process of a torchrun run stopped or stopped answering; this one stops too."""

    exit_code = 1


class Interrupted(Exception):
    """Meta-training stopped on Ctrl-C after a completed outer step, with ``last.pt`` written."""

    exit_code = 130


def first_line(exc: BaseException, limit: Optional[int] = None) -> str:
    """An exception's message reduced to its first line (at most ``limit`` characters), or
    its type's name when it has none: the reason part of a one-line error."""
    text = str(exc).strip()
    return (text.splitlines()[0][:limit] if text else "") or type(exc).__name__


def require_positive_integers(flags: Mapping[str, Optional[int]]) -> None:
    """One line for the first flag (name without ``--``) whose value is below 1; None is unset."""
    for name, value in flags.items():
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be a positive integer, got {value}")


def require_positive_numbers(flags: Mapping[str, Optional[float]]) -> None:
    """One line for the first flag whose value is not a finite number above 0; None is unset."""
    for name, value in flags.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name} must be a positive number, got {value}")
