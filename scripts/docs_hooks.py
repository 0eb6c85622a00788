"""mkdocs hook: fills two pages from the code at build time, so they cannot drift from it.

- docs/guide/cli-reference.md: every flag of every sub-command with the help and default that
  ``--help`` prints (flags are declared once, as fields of the commands' config dataclasses);
  one marker line per command, ``<!-- flags: run.py -->``.
- docs/guide/presets.md: every preset with its source and the flags it sets, from
  ``bilevel_anil.recipes.presets.PRESETS`` and ``bilevel_anil.recipes.pipeline.PIPELINE_PRESETS``; marker lines
  ``<!-- presets: run.py -->`` and ``<!-- presets: run.py pipeline -->``.

Nothing else of the docs is touched.
"""
from __future__ import annotations

import argparse
import re

MARKER = re.compile(r"^<!-- flags: (.+?) -->$", re.M)
PRESET_MARKER = re.compile(r"^<!-- presets: (.+?) -->$", re.M)
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
    from bilevel_anil import cli

    words = command.split()  # "run.py" or "run.py SUBCOMMAND"
    parser = (cli.subcommand(words[1]) if len(words) > 1 else cli).build_parser()
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


def preset_table(command: str) -> str:
    """The markdown of one command's presets: name, source, and the flags each one sets."""
    from bilevel_anil.settings import flag_of

    if command == "run.py":
        from bilevel_anil.recipes.run_config import RunConfig
        from bilevel_anil.recipes.presets import PRESETS as presets
        settings = RunConfig
    elif command == "run.py pipeline":
        from bilevel_anil.recipes.pipeline import PIPELINE_PRESETS as presets, PipelineConfig as settings
    else:
        raise ValueError(f"no presets for {command!r}")
    rows = ["| preset | source | flags it sets |", "|---|---|---|"]
    for name, preset in presets.items():
        shown = []
        for field, value in preset.values.items():
            flag = flag_of(settings, field)
            if isinstance(value, bool):  # a switch: shown when the preset turns it on
                if value != flag.startswith("--no-"):
                    shown.append(f"`{flag}`")
            else:
                shown.append(f"`{flag} {value}`")
        flags = " ".join(shown)
        rows.append(f"| `{name}` | {_cell(preset.source)} | {flags} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "guide/cli-reference.md":
        return MARKER.sub(lambda m: flag_table(m.group(1)), markdown)
    if page.file.src_uri == "guide/presets.md":
        return PRESET_MARKER.sub(lambda m: preset_table(m.group(1)), markdown)
    return markdown
