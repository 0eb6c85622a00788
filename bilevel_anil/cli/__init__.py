"""The command line: ``python run.py`` and its sub-commands, a thin layer over the library.

``run.py`` itself is ``cli.run`` (meta-train and test); each sub-command is one module of
this package (``SUBCOMMANDS``). The names load on first use, so that importing
``bilevel_anil.cli.console`` (the entry point) loads nothing heavy.
"""
from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(".run", __name__), name)
