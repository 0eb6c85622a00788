"""Argument parsing shared by ``run.py`` and its sub-commands: one-line errors, tidy defaults."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from ..errors import Interrupted, PeerFailure, UsageError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where the help does not already state the default and X
    says something (not for None or on/off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default in (None, argparse.SUPPRESS) or "default" in text or action.nargs == 0):
            return text
        return super()._get_help_string(action)


def secondary_process() -> bool:
    """A process of a torchrun run other than rank 0: its one-line errors are left to rank 0
    (every process meets the same bad input; one line, not one per process run together)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # not started by torchrun: every process speaks
        return False
    try:
        return 0 < int(os.environ.get("RANK", "0")) < int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return False


def say(line: str) -> None:
    """One line on stderr, whole (flushed), from rank 0 only."""
    if not secondary_process():
        print(line, file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        say(f"{self.prog}: error: {message} (see --help)")
        self.exit(2)


# Python arguments named in the library's lines that the command line spells otherwise; any
# other argument is its flag: inner_lr -> --inner-lr
FLAG_ALIASES = {"algorithm": "--problem", "adapt": "--head-only", "rotate": "--no-rotate"}


def flag(argument: str) -> str:
    """The command line's flag for a Python argument named in a library line."""
    return FLAG_ALIASES.get(argument, "--" + argument.replace("_", "-"))


def report_errors(prog: str, command: Callable[[], object], on_interrupt: str) -> int:
    """Run ``command``; bad input becomes one line on stderr and its exit code (2), a Ctrl-C
    one line and 130 (``on_interrupt`` says what was kept). Returns the exit code. The
    library's lines name its Python arguments; here they are shown as flags (``flag``)."""
    try:
        command()
    except UsageError as exc:
        say(f"{prog}: error: {exc.render(flag)}")
        return exc.exit_code
    except (Interrupted, PeerFailure) as exc:
        print(f"{prog}: {exc.render(flag)}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {on_interrupt}", file=sys.stderr, flush=True)
        return 130
    return 0
