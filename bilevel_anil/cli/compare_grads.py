"""``run.py compare-grads``: the parser (generated from the recipe's settings class) and the
command's entry point over ``bilevel_anil.recipes.compare``."""
from __future__ import annotations

import argparse
from typing import Sequence

from ..recipes.compare import COMPARE_DATASETS, CompareConfig, run_comparison
from ..settings import build_parser as build_settings_parser
from ..errors import UsageError, require_device, require_output, require_positive_integers, require_positive_numbers, require_seed
def build_parser() -> argparse.ArgumentParser:
    """``run.py compare-grads``'s parser, generated from ``CompareConfig``."""
    from .argparsing import HelpFormatter, Parser

    return build_settings_parser(
        CompareConfig, prog="run.py compare-grads", parser_class=Parser, formatter_class=HelpFormatter,
        description="Compare implicit (CG, Neumann, DARTS), unrolled and first-order meta-gradients with the exact "
                    "implicit gradient on one fixed meta-batch.",
        context={"datasets": " or ".join(COMPARE_DATASETS)})


def parse_config(argv: Sequence[str]) -> CompareConfig:
    """The settings of a ``run.py compare-grads`` command line, checked before any data is read
    (``--ways`` defaults to 5 on a classification data set)."""
    cfg = CompareConfig(**vars(build_parser().parse_args(argv)))
    require_positive_integers({name.replace("_", "-"): getattr(cfg, name) for name in
                               ("ways", "shots", "queries", "tasks", "inner_steps", "exact_max_iterations")})
    require_positive_numbers({name.replace("_", "-"): getattr(cfg, name)
                              for name in ("lam", "inner_lr", "neumann_alpha", "exact_tol")})
    require_seed(cfg.seed)
    require_device(cfg.device)
    require_output(cfg.out)
    if cfg.dataset not in COMPARE_DATASETS:
        raise UsageError(f"unknown --dataset {cfg.dataset!r}: choose {' or '.join(COMPARE_DATASETS)}")
    data = COMPARE_DATASETS[cfg.dataset]
    if not data.classes and cfg.ways is not None:
        raise UsageError(f"--ways applies to classification; {cfg.dataset} has no classes: drop --ways")
    if cfg.ways is None and data.classes:
        cfg.ways = 5
    if cfg.ways is not None and cfg.ways < 2:
        raise UsageError(f"--ways must be at least 2 for classification, got {cfg.ways}")
    return cfg


def main(argv: Sequence[str]) -> int:
    from .argparsing import report_errors
    return report_errors("run.py compare-grads", lambda: run_comparison(parse_config(argv)), "nothing was written")
