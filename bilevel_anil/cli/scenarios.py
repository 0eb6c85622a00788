"""``run.py scenarios``: the parser (generated from the recipe's settings class) and the
command's entry point over ``bilevel_anil.recipes.scenarios``."""
from __future__ import annotations

import argparse
from typing import Sequence

from ..recipes.scenarios import SCENARIOS, ScenarioConfig, run_scenarios, validate
from ..settings import build_parser as build_settings_parser
def build_parser() -> argparse.ArgumentParser:
    """``run.py scenarios``'s parser, generated from ``ScenarioConfig``."""
    from .argparsing import HelpFormatter, Parser

    return build_settings_parser(
        ScenarioConfig, prog="run.py scenarios", parser_class=Parser, formatter_class=HelpFormatter,
        description="Run the ANIL notes' four training scenarios and the S4 ablation at equal settings and time "
                    "budget; print and save the comparison (--out, default runs/scenarios-<time>).",
        context={"scenarios": ", ".join(s.key for s in SCENARIOS)})


def parse_config(argv: Sequence[str]) -> ScenarioConfig:
    """The settings of a ``run.py scenarios`` command line, checked before any data is read."""
    cfg = ScenarioConfig(**vars(build_parser().parse_args(argv)))
    validate(cfg)
    return cfg


def main(argv: Sequence[str]) -> int:
    from .argparsing import report_errors
    return report_errors("run.py scenarios", lambda: run_scenarios(parse_config(argv)),
                         "finished scenarios keep their run folders")
