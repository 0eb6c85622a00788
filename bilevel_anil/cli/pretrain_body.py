"""``run.py pretrain-body``: the parser (generated from the recipe's settings class) and the
command's entry point over ``bilevel_anil.recipes.pretrain_body``."""
from __future__ import annotations

import argparse
from typing import Sequence

from ..recipes.pretrain_body import BODIES, BodyPretrainConfig, pretrain_body, validate_config
from ..settings import build_parser as build_settings_parser
def build_parser() -> argparse.ArgumentParser:
    """``run.py pretrain-body``'s parser, generated from ``BodyPretrainConfig``."""
    from .argparsing import HelpFormatter, Parser
    from ..data.registry import DATASETS

    return build_settings_parser(
        BodyPretrainConfig, prog="run.py pretrain-body", parser_class=Parser, formatter_class=HelpFormatter,
        description="Pretrain a body as a classifier over a data set's meta-training classes; writes a file for "
                    "--pretrained PATH (--out, default runs/pretrain-body-<arch>-<time>.pt).",
        context={"archs": ", ".join(BODIES),
                 "datasets": ", ".join(name for name, spec in DATASETS.items() if spec.load_splits)})


def parse_config(argv: Sequence[str]) -> BodyPretrainConfig:
    """The settings of a ``run.py pretrain-body`` command line, checked before any data is read."""
    cfg = BodyPretrainConfig(**vars(build_parser().parse_args(argv)))
    validate_config(cfg)
    return cfg


def main(argv: Sequence[str]) -> int:
    from .argparsing import report_errors
    return report_errors("run.py pretrain-body", lambda: pretrain_body(parse_config(argv)),
                         "the best body so far is in its --out file, if an epoch finished")
