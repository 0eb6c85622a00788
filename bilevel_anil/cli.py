"""Command line: ``python run.py --problem anil [options]``."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Optional, Sequence

from .algorithms import ALGORITHMS, GRADS
from .allocator import keep_freed_memory
from .argparsing import HelpFormatter, Parser, report_errors
from .config import (DATASET_DEFAULTS, DATASETS, RunConfig, flag_scopes_help, resolve_config, validate_config,
                     validate_scopes)
from .errors import UsageError
from .fast_weights import INNER_OPTIMIZERS
from .models import IMAGE_ARCHS, TRAIN_BODY
from .models.conv4 import BN_MODES
from .presets import PRESETS
from .solvers import HYPERGRADS

__all__ = ["build_parser", "main", "parse_config", "resolve_config", "RunConfig"]

def _dataset_default(field: str) -> str:
    """``default: 5 (omniglot, mini-imagenet, ...), 10 (sine)``: each value once, with its datasets."""
    by_value: dict[str, list[str]] = {}
    for name, d in DATASET_DEFAULTS.items():
        if (v := d.get(field)) is not None:
            by_value.setdefault(str(v), []).append(name)
    return "default: " + ", ".join(f"{v} ({', '.join(names)})" for v, names in by_value.items())


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = Parser(prog="run.py", description="Meta-train a few-shot learner with Betty and report meta-test results.",
                epilog="Also: run.py compare-grads compares implicit, unrolled and first-order meta-gradients on "
                       "one meta-batch; run.py pretrain-body trains a body as a classifier for --pretrained; "
                       "run.py scenarios runs the ANIL notes' four scenarios (each with --help). "
                       + flag_scopes_help(),
                formatter_class=HelpFormatter)
    dd = _dataset_default
    p.add_argument("--preset", default=None, metavar="NAME",
                   help=f"a paper's protocol (flags given explicitly override it): {', '.join(PRESETS)}; "
                        "each one's source is printed at the start of the run and listed in the README")
    p.add_argument("--problem", default=d.problem, metavar="NAME",
                   help=f"algorithm: {', '.join(ALGORITHMS)} (anil/foanil/ianil adapt only the head in the inner loop; "
                        "imaml/ianil add a proximal term to it and use the implicit meta-gradient; pretrain: the "
                        "MAML paper's baseline, trained on the query loss without adaptation, fine-tuned at test; "
                        "reptile: moves θ towards each task's adapted weights; default anil)")
    p.add_argument("--dataset", default=d.dataset, metavar="NAME",
                   help=f"benchmark: {', '.join(DATASETS)} (sine: the MAML paper's sine-wave regression; "
                        "mini-imagenet, tiered-imagenet and fc100 are published as Python pickles, read from "
                        "--data-root only, with an unpickler that admits arrays, dicts, lists and strings alone; "
                        "folder: your own images in --data-root/{train,val,test}/<class>/*)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding omniglot-py/ (torchvision layout), learn2learn's files of the natural-image "
                        "benchmarks (README, Natural-image benchmarks), or for --dataset folder the train/, val/ and "
                        "test/ class folders; default ./data, downloaded if missing")
    p.add_argument("--no-download", dest="download", action="store_false", help="never download the data set")
    p.add_argument("--ways", type=int, default=None, help=f"classes per task (N), classification only; {dd('ways')}")
    p.add_argument("--shots", type=int, default=None,
                   help=f"support examples per class (K; for sine: support points) in training; {dd('shots')}")
    p.add_argument("--queries", type=int, default=None,
                   help=f"query examples per class (sine: query points) in meta-training; {dd('queries')}")
    p.add_argument("--test-queries", type=int, default=None,
                   help=f"query examples per class (sine: points) in validation and test tasks; {dd('test_queries')}")
    p.add_argument("--train-shots", type=int, default=None,
                   help="support examples per class (sine: points) in meta-training tasks only (default: --shots; "
                        "reptile on omniglot 10, on sine 50)")
    p.add_argument("--inner-batch", type=int, default=None, metavar="N",
                   help="examples per task in each inner step, taken in a random order (default: the whole "
                        "support set; reptile 10)")
    p.add_argument("--inner-optimizer", default=None, metavar="NAME",
                   help=f"inner-loop optimiser: {', '.join(INNER_OPTIMIZERS)} (adam: β1 = 0, as in Reptile; "
                        "default sgd, reptile adam on omniglot)")
    p.add_argument("--inner-steps", type=int, default=None,
                   help="steps of the inner loop (default: 1; imaml/ianil 5; on omniglot: imaml 16, ianil 100, "
                        "reptile 5)")
    p.add_argument("--test-inner-steps", type=int, default=None,
                   help="inner steps at validation/test time (default: --inner-steps)")
    p.add_argument("--inner-lr", type=float, default=None,
                   help=f"inner-loop step size; {dd('inner_lr')}; on omniglot: imaml 0.1, ianil 0.02, reptile 0.001")
    p.add_argument("--meta-lr", type=float, default=None,
                   help=f"Adam learning rate of the meta-parameters; {dd('meta_lr')}")
    p.add_argument("--meta-eps", type=float, default=None,
                   help="epsilon of the outer Adam (default 1e-8)")
    p.add_argument("--meta-batch", type=int, default=None, help=f"tasks per outer step (B); {dd('meta_batch')}")
    p.add_argument("--task-chunk", type=int, default=None, metavar="C",
                   help="run each outer step's tasks C at a time and accumulate the meta-gradient: the same step "
                        "with memory for C tasks instead of B (C divides the tasks of each process; default: all)")
    p.add_argument("--iterations", type=int, default=None, help=f"outer steps; {dd('iterations')}")
    p.add_argument("--val-every", type=int, default=None,
                   help=f"validate (and checkpoint) every this many outer steps; {dd('val_every')}")
    p.add_argument("--val-tasks", type=int, default=None,
                   help=f"held-out validation tasks (fixed for the run); {dd('val_tasks')}")
    p.add_argument("--test-tasks", type=int, default=d.test_tasks, help="meta-test tasks for the final report")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop meta-training after this many seconds of outer steps (validation excluded), "
                        "validating and checkpointing there: compares algorithms at equal compute; "
                        "the step count then depends on the machine")
    p.add_argument("--first-order", action="store_true",
                   help="drop second-order terms of the unrolled meta-gradient (maml -> fomaml, anil -> foanil)")
    p.add_argument("--head-only", action="store_true",
                   help="adapt only the head in the inner loop (maml -> anil, imaml -> ianil)")
    p.add_argument("--grad", default=None, metavar="HOW",
                   help=f"meta-gradient: {' or '.join(GRADS)} (default: implicit for imaml/ianil, unrolled "
                        "otherwise); the inner objective stays the same, only the Betty lower problem changes")
    p.add_argument("--lam", type=float, default=d.lam,
                   help="imaml/ianil: proximal strength λ of the inner objective support loss + (λ/2)·‖φ − θ‖² "
                        "(default 2; imaml on sine 10)")
    p.add_argument("--test-lam", type=float, default=None,
                   help="imaml/ianil: λ of the proximal term when adapting at validation and test time (default "
                        "--lam; imaml on omniglot 0, as the iMAML authors evaluate)")
    p.add_argument("--inner-proximal", default=None, metavar="WHERE",
                   help="imaml/ianil: every (the proximal term in every inner step, the paper's objective; the "
                        "default) or pullback (the authors' code: the inner steps on the support loss alone, then one "
                        "step on the proximal term; the default of imaml on Omniglot)")
    p.add_argument("--cg-damping", type=float, default=None, metavar="D",
                   help="imaml/ianil with --hypergrad cg: CG solves ((1 + D)·I + H/(λ + C)) x = ∇L instead of "
                        "(I + H/λ) x = ∇L (H: the support loss's Hessian); default 0, imaml 1 (the iMAML "
                        "authors' code)")
    p.add_argument("--cg-lam-damping", type=float, default=None, metavar="C",
                   help="the C above (default 0; imaml 10, the authors' fixed lam_damping)")
    p.add_argument("--hypergrad", default=d.hypergrad, metavar="METHOD",
                   help=f"implicit gradient's inverse-Hessian approximation: {', '.join(HYPERGRADS)} "
                        "(cg: textbook conjugate gradient; betty-cg: Betty 0.2.1's own CG, kept for comparison)")
    p.add_argument("--hypergrad-iterations", type=int, default=d.hypergrad_iterations,
                   help="CG iterations (Hessian-vector products) or Neumann series terms")
    p.add_argument("--neumann-alpha", type=float, default=d.neumann_alpha,
                   help="Neumann series step size (converges when below 2 / largest eigenvalue of the inner Hessian)")
    p.add_argument("--darts-alpha", type=float, default=d.darts_alpha, help="DARTS finite-difference radius")
    p.add_argument("--bn", default=None, metavar="MODE",
                   help=f"BatchNorm statistics (Conv4): {', '.join(BN_MODES)}; {dd('bn')}. batch: each set's own "
                        "statistics, also at test time (transductive, the MAML reference); running: running "
                        "statistics from meta-training at test time (each example on its own)")
    p.add_argument("--arch", default=None, metavar="NAME",
                   help=f"network for images: {', '.join(IMAGE_ARCHS)} (default conv4; sine always uses its MLP). "
                        "conv4 runs its hand-written task-batched forward, the torchvision bodies the generic "
                        "per-task path (vmap over functional_call); the head is a new linear layer of --ways outputs")
    p.add_argument("--image-size", type=int, default=d.image_size, metavar="PIXELS",
                   help="Omniglot and folder images are resized to this square size (Omniglot 28 as in the "
                        "MAML/ANIL papers; folder 84)")
    p.add_argument("--channels", type=int, default=None, metavar="C",
                   help="--dataset folder: 1 (grey) or 3 (RGB, the default) input channels")
    p.add_argument("--pretrained", default=None, metavar="SOURCE",
                   help="initialise the body from 'imagenet' (torchvision's weights, downloaded into torch's cache) "
                        "or from a file: a state_dict, a torchvision checkpoint, a run's best.pt, or the output of "
                        "run.py pretrain-body")
    p.add_argument("--train-body", default=d.train_body, metavar="WHAT",
                   help=f"what of the body the outer loop trains: {', '.join(TRAIN_BODY)} (bn: convolutions frozen, "
                        "BatchNorm affine parameters meta-trained; none: head only); bn/none need an algorithm "
                        "that adapts only the head (anil, foanil, ianil)")
    p.add_argument("--no-rotate", dest="rotate", action="store_false",
                   help="no random 90-degree class rotations in meta-training tasks")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (runs with the same seed are identical)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder for metrics.csv, checkpoints and results.json (default: runs/<name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                   help="no progress bar (a line per validation instead)")
    p.add_argument("--log", default=d.log, metavar="WHERE",
                   help="csv: metrics.csv only; tensorboard: also TensorBoard events in OUT/tensorboard "
                        "(the same scalars; needs pip install tensorboard)")
    return p


def explicit_flags(argv: Sequence[str]) -> set[str]:
    """The config fields given on the command line (so that a preset does not override them)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def apply_preset(cfg: RunConfig, explicit: set[str], presets: Optional[dict] = None) -> RunConfig:
    """A new config with the fields of ``cfg.preset`` that were not given explicitly; a preset
    naming a field that :class:`RunConfig` does not have is an error (not stored silently)."""
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
    validate_config(cfg)
    validate_scopes(cfg, explicit)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    status = report_errors("run.py", keep_freed_memory, "nothing was started")  # bad BILEVEL_ANIL_MALLOC
    if status:
        return status
    if argv[:1] == ["compare-grads"]:
        from .compare import main as compare_main
        return compare_main(argv[1:])
    if argv[:1] == ["pretrain-body"]:
        from .pretrain_body import main as pretrain_body_main
        return pretrain_body_main(argv[1:])
    if argv[:1] == ["scenarios"]:
        from .scenarios import main as scenarios_main
        return scenarios_main(argv[1:])
    def run() -> None:
        cfg = parse_config(argv)
        from . import distributed
        from .experiment import train_and_test
        # under torchrun: join the other processes; only rank 0 prints (errors: every process)
        import torch
        group = distributed.init_from_environment(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            with group.stdout():
                train_and_test(resolve_config(cfg))
        finally:
            distributed.shutdown()

    return report_errors("run.py", run, "the last checkpoint in the output folder is intact (continue with --resume)")

