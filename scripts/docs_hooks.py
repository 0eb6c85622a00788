"""mkdocs hook: fills docs/guide/cli-reference.md from the command-line parsers at build time,
so the page lists every flag of every sub-command with the help and default that ``--help``
prints (flags are declared once, as fields of the commands' config dataclasses).

The page holds one marker line per command, ``<!-- flags: run.py -->``; nothing else of the
docs is touched.
"""
from __future__ import annotations

import argparse
import importlib
import re

# command -> the module whose build_parser() makes its parser
COMMANDS = {
    "run.py": "bilevel_anil.cli",
    "run.py pretrain-body": "bilevel_anil.pretrain_body",
    "run.py pipeline": "bilevel_anil.pipeline",
    "run.py scenarios": "bilevel_anil.scenarios",
    "run.py compare-grads": "bilevel_anil.compare",
}
MARKER = re.compile(r"^<!-- flags: (.+?) -->$", re.M)
SHARED = {"--data-root", "--no-download", "--seed", "--device", "--out", "--no-progress"}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or action.default in (
            None, argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"


def flag_table(command: str) -> str:
    """The markdown of one command's flags: the shared ones, then its own, as ``--help``
    orders them."""
    parser = importlib.import_module(COMMANDS[command]).build_parser()
    formatter = parser._get_formatter()
    rows = {"shared": [], "own": []}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flags = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        if action.metavar or action.nargs != 0 and action.option_strings:
            flags += f" *{_cell(action.metavar or action.dest.upper())}*"
        help_text = formatter._expand_help(action) if action.help else ""
        row = f"| {flags} | {_cell(help_text)} | {_default(action)} |"
        rows["shared" if set(action.option_strings) & SHARED else "own"].append(row)
    head = "| flag | meaning | default |\n|---|---|---|\n"
    out = [f"`{command} --help` prints the same.\n"]
    if parser.description:
        out.append(_cell(parser.description) + "\n")
    out.append("**Its own flags**\n\n" + head + "\n".join(rows["own"]) + "\n")
    out.append("**Shared by every command**\n\n" + head + "\n".join(rows["shared"]) + "\n")
    if parser.epilog:
        out.append("*" + _cell(parser.epilog).replace("*", "\\*") + "*\n")
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != "guide/cli-reference.md":
        return markdown
    return MARKER.sub(lambda m: flag_table(m.group(1)), markdown)
