"""Errors that reach the user as one line and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""

    exit_code = 2


class DataError(UsageError):
    """A data set is missing, unreadable or too small for the requested episodes."""


class TrainingDiverged(UsageError):
    """Meta-training produced a non-finite loss; the checkpoints written before are kept."""
