"""``run.py pipeline``: the parser (generated from the recipe's settings class) and the
command's entry point over ``bilevel_anil.recipes.pipeline``."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

from ..recipes.pipeline import PIPELINE_PRESETS, PipelineConfig, run_pipeline, validate_config
from ..settings import build_parser as build_settings_parser, explicit_fields
from ..errors import UsageError
def build_parser() -> argparse.ArgumentParser:
    """``run.py pipeline``'s parser, generated from ``PipelineConfig``."""
    from ..core.algorithms import ALGORITHMS
    from .argparsing import HelpFormatter, Parser
    from ..data.registry import DATASETS
    from ..models import BODIES

    return build_settings_parser(
        PipelineConfig, prog="run.py pipeline", parser_class=Parser, formatter_class=HelpFormatter,
        description="Pretrain a body, meta-train it and fine-tune at test time within one wall-clock budget; "
                    "writes the stage table, a run folder and an accuracy-versus-time plot.",
        context={"presets": ", ".join(PIPELINE_PRESETS), "archs": ", ".join(BODIES),
                 "algorithms": ", ".join(ALGORITHMS),
                 "datasets": ", ".join(name for name, spec in DATASETS.items() if spec.load_splits)})


def parse_config(argv: Sequence[str]) -> PipelineConfig:
    parser = build_parser()
    cfg = PipelineConfig(**vars(parser.parse_args(argv)))
    if cfg.preset is not None:
        if cfg.preset not in PIPELINE_PRESETS:
            raise UsageError(f"unknown --preset {cfg.preset!r}: choose one of {', '.join(PIPELINE_PRESETS)}")
        explicit = explicit_fields(parser, argv)
        cfg = dataclasses.replace(cfg, **{k: v for k, v in PIPELINE_PRESETS[cfg.preset].values.items()
                                          if k not in explicit})
    validate_config(cfg)
    return cfg


def main(argv: Sequence[str]) -> int:
    from .argparsing import report_errors

    return report_errors("run.py pipeline", lambda: run_pipeline(parse_config(argv)),
                         "finished stages are in the output folder (pretrain/body.pt, meta/best.pt)")
