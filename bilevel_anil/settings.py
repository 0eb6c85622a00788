"""Command-line settings declared once, on the dataclass that holds them.

A field declared with ``setting`` (or ``shared`` for the flags every sub-command has)
carries its flag's help; ``build_parser`` generates the parser, ``--help``'s defaults and
the list of explicitly given flags from the dataclass, and ``fields_marked`` answers
questions such as "which settings must a resumed run keep" from the same declarations.
Adding a run flag is one field.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     steps: int = setting(10, "outer steps")
    ...     device: str | None = shared("device")
    >>> build_parser(Demo, prog="demo").parse_args(["--steps", "3"]).steps
    3
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import typing
from typing import Any, Callable, Optional, Sequence

__all__ = ["setting", "shared", "shared_parser", "build_parser", "explicit_fields", "fields_marked", "flag_of"]


def setting(default: Any = None, help: str = "", *, metavar: Optional[str] = None,
            flag: Optional[str] = None, mark: Optional[str] = None, parse: Optional[Callable[[str], Any]] = None,
            factory: Optional[Callable[[], Any]] = None) -> Any:
    """A dataclass field that is also a command-line flag.

    ``help`` may name ``{default}`` values filled in by the parser's ``context`` (the registries'
    names, the datasets' defaults). ``flag`` overrides ``--field-name`` (``--no-rotate`` for a
    switch that defaults to on); ``mark`` tags the field for ``fields_marked``; ``parse``
    converts the text (default: the field's type); ``factory`` gives a mutable default."""
    metadata = {"help": help, "metavar": metavar, "flag": flag, "mark": mark, "parse": parse}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# the flags every sub-command has, declared here once: name -> (type, default, help, metavar, flag)
_SHARED: dict[str, tuple[type, Any, str, Optional[str], Optional[str]]] = {
    "data_root": (str, None, "folder holding the data set (omniglot-py/ for Omniglot, the natural-image benchmarks' "
                             "files, or --dataset folder's train/, val/ and test/ class folders); default ./data, "
                             "downloaded there if missing", "DIR", None),
    "download": (bool, True, "never download the data set", None, "--no-download"),
    "seed": (int, 0, "random seed (runs with the same seed are identical)", None, None),
    "device": (str, None, "cpu, cuda or cuda:N (default: cuda when available)", None, None),
    "out": (str, None, "where the results go (default: a new folder, or file for pretrain-body, under runs/)",
            "PATH", None),
    "progress": (bool, None, "no progress bar (a line per validation or epoch instead)", None, "--no-progress"),
}


def shared(name: str, *, mark: Optional[str] = None) -> Any:
    """One of the flags the sub-commands share (``data_root``, ``download``, ``seed``,
    ``device``, ``out``, ``progress``): the same flag, default and help in every command, added
    through one parent parser (``shared_parser``)."""
    _, default, text, metavar, flag = _SHARED[name]
    field = setting(default, text, metavar=metavar, flag=flag, mark=mark)
    field.metadata = {**field.metadata, "shared": True}
    return field


def _flag(name: str, meta: Any) -> str:
    return meta.get("flag") or "--" + name.replace("_", "-")


def flag_of(cls: type, name: str) -> str:
    """The command-line flag of setting ``name`` of ``cls``: ``--inner-lr`` for ``inner_lr``
    unless the field declares another (``--no-rotate`` for ``rotate``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return _flag(name, fields[name].metadata) if name in fields else _flag(name, {})


def _value_type(hint: Any) -> Any:
    """``int`` for ``Optional[int]``, ``bool`` for ``bool``, ... (from the resolved annotation)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args and type(None) in typing.get_args(hint) else hint


def _add(parser: argparse.ArgumentParser, name: str, kind: Any, default: Any, meta: dict, context: dict) -> None:
    help_text = meta["help"].format(**context) if context else meta["help"]
    flag = _flag(name, meta)
    if kind is bool:
        if default is None:  # unset (decided later) or switched off by the flag
            parser.add_argument(flag, dest=name, action="store_const", const=False, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, action="store_false" if default else "store_true", default=default,
                                help=help_text)
        return
    parse = meta.get("parse") or (kind if kind in (int, float) else None)
    parser.add_argument(flag, dest=name, type=parse, default=default, metavar=meta.get("metavar"), help=help_text)


def shared_parser(names: Sequence[str]) -> argparse.ArgumentParser:
    """The parent parser (argparse ``parents=``) of the shared flags ``names``."""
    parent = argparse.ArgumentParser(add_help=False)
    for name in names:
        kind, default, text, metavar, flag = _SHARED[name]
        _add(parent, name, kind, default, {"help": text, "metavar": metavar, "flag": flag}, {})
    return parent


def build_parser(cls: type, *, prog: str, description: str = "", epilog: Optional[str] = None,
                 context: Optional[dict[str, str]] = None,
                 parser_class: type = argparse.ArgumentParser,
                 formatter_class: type = argparse.HelpFormatter) -> argparse.ArgumentParser:
    """The parser of every ``setting`` of the dataclass ``cls``, in declaration order after
    the shared flags; ``context`` fills the ``{names}`` in the helps."""
    fields = [f for f in dataclasses.fields(cls) if "help" in f.metadata]
    hints = typing.get_type_hints(cls)
    parents = [shared_parser([f.name for f in fields if f.metadata.get("shared")])]
    parser = parser_class(prog=prog, description=description, epilog=epilog, parents=parents,
                          formatter_class=formatter_class)
    for f in fields:
        if not f.metadata.get("shared"):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            _add(parser, f.name, _value_type(hints[f.name]), default, dict(f.metadata), context or {})
    return parser


def explicit_fields(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The settings given on the command line ``argv`` (not left at their defaults)."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def fields_marked(cls: type, mark: str) -> tuple[str, ...]:
    """The settings of ``cls`` declared with ``mark=mark``, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("mark") == mark)
