"""Errors that reach the user as one line and exit code 2."""


class UsageError(ValueError):
    """Bad input from the user: the message says what is wrong and what to do (a ``ValueError``
    for Python callers, one line and exit code 2 on the command line)."""

    exit_code = 2


class DataError(UsageError):
    """A data set is missing, unreadable or too small for the requested episodes."""


class TrainingDiverged(UsageError):
    """Meta-training produced a non-finite loss; the checkpoints written before are kept."""


class Interrupted(Exception):
    """Meta-training stopped on Ctrl-C after a completed outer step, with ``last.pt`` written."""

    exit_code = 130
