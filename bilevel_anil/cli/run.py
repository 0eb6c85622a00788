"""Command line: ``python run.py --problem anil [options]``."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Optional, Sequence

from ..core.algorithms import ALGORITHMS, GRADS
from ..training.allocator import keep_freed_memory
from .argparsing import HelpFormatter, Parser, report_errors
from ..recipes.run_config import (DATASET_DEFAULTS, DATASETS, RunConfig, flag_scopes_help, resolve_config,
                                 validate_config)
from ..errors import UsageError
from ..core.fast_weights import INNER_OPTIMIZERS
from ..models import BODIES, TRAIN_BODY
from ..models.conv4 import BN_MODES
from ..recipes.presets import PRESETS
from ..settings import build_parser as build_settings_parser, explicit_fields
from ..core.solvers import HYPERGRADS

__all__ = ["build_parser", "main", "parse_config", "resolve_config", "RunConfig"]

# run.py SUBCOMMAND -> the module of this package holding its build_parser(), parse_config(argv) and main(argv)
SUBCOMMANDS = {"compare-grads": ".compare_grads", "pretrain-body": ".pretrain_body", "pipeline": ".pipeline",
               "scenarios": ".scenarios"}


def subcommand(name: str):
    """The module of ``run.py NAME`` (imported on first use)."""
    return importlib.import_module(SUBCOMMANDS[name], __package__)


def _dataset_default(field: str) -> str:
    """``default: 5 (omniglot, mini-imagenet, ...), 10 (sine)``: each value once, with its datasets."""
    by_value: dict[str, list[str]] = {}
    for name, d in DATASET_DEFAULTS.items():
        if (v := d.get(field)) is not None:
            by_value.setdefault(str(v), []).append(name)
    return "default: " + ", ".join(f"{v} ({', '.join(names)})" for v, names in by_value.items())


def build_parser() -> argparse.ArgumentParser:
    """``run.py``'s parser, generated from ``RunConfig``'s field declarations."""
    return build_settings_parser(
        RunConfig, prog="run.py", parser_class=Parser, formatter_class=HelpFormatter,
        description="Meta-train a few-shot learner with Betty and report meta-test results.",
        epilog="Also: run.py compare-grads compares implicit, unrolled and first-order meta-gradients on one "
               "meta-batch; run.py pretrain-body trains a body as a classifier for --pretrained; run.py pipeline "
               "pretrains, meta-trains and fine-tunes within one time budget; run.py scenarios "
               "runs the ANIL notes' four scenarios (each with --help). " + flag_scopes_help(),
        context={"presets": ", ".join(PRESETS), "algorithms": ", ".join(ALGORITHMS), "datasets": ", ".join(DATASETS),
                 "inner_optimizers": ", ".join(INNER_OPTIMIZERS), "grads": " or ".join(GRADS),
                 "hypergrads": ", ".join(HYPERGRADS), "bn_modes": ", ".join(BN_MODES), "archs": ", ".join(BODIES),
                 "train_body": ", ".join(TRAIN_BODY), "dd": _DatasetDefaults()})


class _DatasetDefaults(dict):
    """``{dd[ways]}`` in a help: the datasets' defaults of that field."""

    def __missing__(self, field: str) -> str:
        return _dataset_default(field)


def explicit_flags(argv: Sequence[str]) -> set[str]:
    """The config fields given on the command line (so that a preset does not override them)."""
    return explicit_fields(build_parser(), argv)


def apply_preset(cfg: RunConfig, explicit: set[str], presets: Optional[dict] = None) -> RunConfig:
    """A new config with the fields of ``cfg.preset`` that were not given explicitly; a preset
    naming a field that ``RunConfig`` does not have is an error (not stored silently)."""
    presets = PRESETS if presets is None else presets
    if cfg.preset not in presets:
        raise UsageError(f"unknown --preset {cfg.preset!r}: choose one of {', '.join(presets)}")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(presets[cfg.preset].values) - fields)
    if unknown:
        raise UsageError(f"preset {cfg.preset} sets {unknown[0]!r}, which is not a run setting: fix the preset")
    return dataclasses.replace(cfg, **{name: value for name, value in presets[cfg.preset].values.items()
                                       if name not in explicit})


def parse_config(argv: Optional[Sequence[str]] = None) -> RunConfig:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = RunConfig(**vars(args))
    explicit = explicit_flags(argv)  # a second parse tells the flags given from the defaults
    if cfg.preset is not None:
        cfg = apply_preset(cfg, explicit)
    validate_config(cfg, explicit)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    status = report_errors("run.py", keep_freed_memory, "nothing was started")  # bad BILEVEL_ANIL_MALLOC
    if status:
        return status
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return subcommand(argv[0]).main(argv[1:])
    def run() -> None:
        cfg = parse_config(argv)
        from ..core import distributed
        from ..recipes.experiment import train_and_test
        # under torchrun: join the other processes; only rank 0 prints (errors: every process)
        import torch
        group = distributed.init_from_environment(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            with group.stdout():
                train_and_test(resolve_config(cfg))
        finally:
            distributed.shutdown()

    return report_errors("run.py", run, "the last checkpoint in the output folder is intact (continue with --resume)")

