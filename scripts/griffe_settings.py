"""griffe extension for the API reference: documents each field of the commands' settings
classes (``PipelineConfig``, ``BodyPretrainConfig``) with its flag and the help ``--help``
prints, read from the command's parser when the site is built. The help is declared once, in
the field's ``setting(...)``; this copies it onto the API page.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any

import griffe

# settings class -> the module whose build_parser() makes its command's parser
SETTINGS = {
    "bilevel_anil.recipes.pipeline.PipelineConfig": "bilevel_anil.cli.pipeline",
    "bilevel_anil.recipes.pretrain_body.BodyPretrainConfig": "bilevel_anil.cli.pretrain_body",
}


class SettingsFieldDocs(griffe.Extension):
    def on_class_members(self, *, node: Any, cls: griffe.Class, agent: Any, **kwargs: Any) -> None:
        module = SETTINGS.get(cls.path)
        if module is None:
            return
        parser = importlib.import_module(module).build_parser()
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.dest not in cls.members:
                continue
            flags = ", ".join(f"`{s}`" for s in action.option_strings)
            text = " ".join(formatter._expand_help(action).split())
            member = cls.members[action.dest]
            member.docstring = griffe.Docstring(f"{flags}: {text}", parent=member)
