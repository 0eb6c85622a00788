"""Argument parsing shared by ``run.py`` and its sub-commands: one-line errors, tidy defaults."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import Interrupted, PeerFailure, UsageError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where the help does not already state the default and X
    says something (not for None or on/off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default in (None, argparse.SUPPRESS) or "default" in text or action.nargs == 0):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def report_errors(prog: str, command: Callable[[], object], on_interrupt: str) -> int:
    """Run ``command``; bad input becomes one line on stderr and its exit code (2), a Ctrl-C
    one line and 130 (``on_interrupt`` says what was kept). Returns the exit code."""
    try:
        command()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Interrupted, PeerFailure) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {on_interrupt}", file=sys.stderr)
        return 130
    return 0
