"""Command line: ``python run.py --problem anil [options]``."""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from .algorithms import ALGORITHMS, GRADS, get_algorithm
from .errors import UsageError
from .fast_weights import INNER_OPTIMIZERS
from .presets import PRESETS, algorithm_settings
from .models import IMAGE_ARCHS, TRAIN_BODY
from .models.conv4 import BN_MODES
from .problems.hypergradients import HYPERGRADS

DATASETS = ("omniglot", "sine")

# Settings whose default depends on the benchmark (None in RunConfig means "the dataset's default").
DATASET_DEFAULTS: dict[str, dict[str, object]] = {
    # 5-way 1-shot Omniglot as in the MAML/ANIL papers (inner lr 0.4, meta-batch 32).
    "omniglot": {"ways": 5, "shots": 1, "queries": 1, "test_queries": 15, "inner_lr": 0.4, "meta_lr": 0.003,
                 "meta_batch": 32, "iterations": 1000, "val_every": 100, "val_tasks": 100, "bn": "batch"},
    # Sine-wave regression as in the MAML paper (K=10, 10 query points, meta-batch 25, 70 000 steps).
    # Inner lr 0.001 as the authors' code runs it (cbfinn/maml: the sinusoid usage line leaves
    # --update_lr at its default 1e-3); the paper's text says 0.01, with which rare test tasks
    # diverge after 5-10 steps (README, Results: both measured).
    "sine": {"ways": None, "shots": 10, "queries": 10, "test_queries": 100, "inner_lr": 0.001, "meta_lr": 0.001,
             "meta_batch": 25, "iterations": 70000, "val_every": 5000, "val_tasks": 200, "bn": "none"},
}


# The implicit gradient assumes a solved inner problem. For ianil on Omniglot, 5 head steps
# at lr 0.4 or 0.1 diverged in meta-training; 100 steps at lr 0.02 learned (README, Results).
# Head steps are cheap: the body runs once per outer step.
ALGORITHM_DEFAULTS: dict[tuple[str, str], dict[str, object]] = {
    ("ianil", "omniglot"): {"inner_steps": 100, "inner_lr": 0.02},
    # the papers' settings, taken from their presets (presets.py states the sources)
    ("imaml", "omniglot"): algorithm_settings("imaml-omniglot-5w1s"),
    ("reptile", "omniglot"): algorithm_settings("reptile-omniglot-5w1s"),
    ("reptile", "sine"): algorithm_settings("reptile-sine"),
}


@dataclass
class RunConfig:
    """Everything a run depends on (also stored in its checkpoints). ``None`` fields take the
    dataset's default (:data:`DATASET_DEFAULTS`)."""

    problem: str = "anil"
    preset: Optional[str] = None
    dataset: str = "omniglot"
    data_root: Optional[str] = None
    download: bool = True
    ways: Optional[int] = None
    shots: Optional[int] = None
    train_shots: Optional[int] = None
    inner_batch: Optional[int] = None
    queries: Optional[int] = None
    test_queries: Optional[int] = None
    inner_steps: Optional[int] = None
    test_inner_steps: Optional[int] = None
    inner_lr: Optional[float] = None
    meta_lr: Optional[float] = None
    meta_eps: Optional[float] = None
    inner_optimizer: Optional[str] = None
    meta_batch: Optional[int] = None
    iterations: Optional[int] = None
    val_every: Optional[int] = None
    val_tasks: Optional[int] = None
    test_tasks: int = 600
    time_budget: Optional[float] = None
    first_order: bool = False
    head_only: bool = False
    grad: Optional[str] = None
    lam: float = 2.0
    test_lam: Optional[float] = None
    cg_damping: Optional[float] = None
    hypergrad: str = "cg"
    hypergrad_iterations: int = 5
    neumann_alpha: float = 0.1
    darts_alpha: float = 0.01
    bn: Optional[str] = None
    arch: Optional[str] = None
    image_size: int = 28
    pretrained: Optional[str] = None
    train_body: str = "all"
    rotate: bool = True
    seed: int = 0
    device: Optional[str] = None
    out: Optional[str] = None
    resume: bool = False
    progress: Optional[bool] = None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where the help does not already state the default and X
    says something (not for None or on/off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default in (None, argparse.SUPPRESS) or "default" in text or action.nargs == 0):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _dataset_default(field: str) -> str:
    values = [f"{v} ({name})" for name, d in DATASET_DEFAULTS.items() if (v := d.get(field)) is not None]
    return "default: " + ", ".join(values)


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = _Parser(prog="run.py", description="Meta-train a few-shot learner with Betty and report meta-test results.",
                epilog="Also: run.py compare-grads compares implicit, unrolled and first-order meta-gradients on "
                       "one meta-batch; run.py pretrain-body trains a body as a classifier for --pretrained; "
                       "run.py scenarios runs the ANIL notes' four scenarios (each with --help).",
                formatter_class=_HelpFormatter)
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
                   help=f"benchmark: {', '.join(DATASETS)} (sine: the MAML paper's sine-wave regression)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding omniglot-py/ (torchvision layout); default ./data, downloaded if missing")
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
                   help="imaml/ianil: proximal strength λ of the inner objective support loss + (λ/2)·‖φ − θ‖²")
    p.add_argument("--test-lam", type=float, default=None,
                   help="imaml/ianil: λ of the proximal term when adapting at validation and test time (default "
                        "--lam; imaml on omniglot 0, as the iMAML authors evaluate)")
    p.add_argument("--cg-damping", type=float, default=None,
                   help="imaml/ianil with --hypergrad cg: δ added to the inner Hessian's diagonal, solving "
                        "(H + λI + δI) x = g (default 0, the exact implicit gradient; see README for the iMAML "
                        "authors' damping)")
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
                   help="Omniglot images are resized to this square size (28 as in the MAML/ANIL papers)")
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
    return p


def explicit_flags(argv: Sequence[str]) -> set[str]:
    """The config fields given on the command line (so that a preset does not override them)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def apply_preset(cfg: RunConfig, explicit: set[str]) -> RunConfig:
    """Set the fields of ``cfg.preset`` that were not given explicitly."""
    if cfg.preset is None:
        return cfg
    if cfg.preset not in PRESETS:
        raise UsageError(f"unknown --preset {cfg.preset!r}: choose one of {', '.join(PRESETS)}")
    for name, value in PRESETS[cfg.preset].values.items():
        if name not in explicit:
            setattr(cfg, name, value)
    return cfg


def parse_config(argv: Optional[Sequence[str]] = None) -> RunConfig:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = apply_preset(RunConfig(**vars(args)), explicit_flags(argv))
    validate_config(cfg)
    return cfg


def validate_config(cfg: RunConfig) -> None:
    """Reject bad input with one actionable sentence (before dataset defaults are filled in)."""
    algo = get_algorithm(cfg.problem, cfg.first_order, cfg.head_only, cfg.grad)
    if algo.pretrain and cfg.inner_steps not in (None, 1):
        raise UsageError("--inner-steps: pretrain does not adapt during meta-training; set the fine-tuning "
                         "steps used for validation with --test-inner-steps")
    if cfg.hypergrad not in HYPERGRADS:
        raise UsageError(f"unknown --hypergrad {cfg.hypergrad!r}: choose one of {', '.join(HYPERGRADS)}")
    if cfg.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {cfg.dataset!r}: choose one of {', '.join(DATASETS)}")
    validate_body(cfg, algo)
    if cfg.dataset == "sine":
        if cfg.ways is not None:
            raise UsageError("--ways applies to classification; sine regression has no classes: drop --ways")
        if cfg.bn is not None:
            raise UsageError("--bn applies to the Conv4 network; the sine MLP has no BatchNorm: drop --bn")
    elif cfg.bn is not None and cfg.bn not in BN_MODES:
        raise UsageError(f"unknown BatchNorm mode {cfg.bn!r}: choose one of {', '.join(BN_MODES)}")
    for name, value in (("test-lam", cfg.test_lam), ("cg-damping", cfg.cg_damping)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name} must be a number >= 0, got {value}")
        if value is not None and not algo.proximal:
            raise UsageError(f"--{name} applies to imaml/ianil (the proximal inner objective): drop it")
    if cfg.inner_optimizer is not None and cfg.inner_optimizer not in INNER_OPTIMIZERS:
        raise UsageError(f"unknown --inner-optimizer {cfg.inner_optimizer!r}: choose one of {', '.join(INNER_OPTIMIZERS)}")
    if cfg.inner_optimizer == "adam" and algo.grad == "implicit":
        raise UsageError("--inner-optimizer adam: the implicit meta-gradient assumes the inner loop's gradient "
                         "steps reach a stationary point of the proximal objective; use sgd")
    if cfg.inner_batch is not None and algo.grad == "implicit":
        raise UsageError("--inner-batch: the implicit meta-gradient needs full-batch inner steps: drop it")
    counts = {"ways": cfg.ways, "shots": cfg.shots, "train-shots": cfg.train_shots, "inner-batch": cfg.inner_batch, "queries": cfg.queries, "test-queries": cfg.test_queries,
              "inner-steps": cfg.inner_steps, "test-inner-steps": cfg.test_inner_steps,
              "meta-batch": cfg.meta_batch, "iterations": cfg.iterations, "val-every": cfg.val_every,
              "val-tasks": cfg.val_tasks, "test-tasks": cfg.test_tasks,
              "hypergrad-iterations": cfg.hypergrad_iterations}
    for name, value in counts.items():
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be a positive integer, got {value}")
    if cfg.ways is not None and cfg.ways < 2:
        raise UsageError(f"--ways must be at least 2 for classification, got {cfg.ways}")
    if cfg.time_budget is not None and not (math.isfinite(cfg.time_budget) and cfg.time_budget > 0):
        raise UsageError(f"--time-budget must be a positive number of seconds, got {cfg.time_budget}")
    for name, value in (("inner-lr", cfg.inner_lr), ("meta-lr", cfg.meta_lr), ("meta-eps", cfg.meta_eps), ("lam", cfg.lam),
                        ("neumann-alpha", cfg.neumann_alpha), ("darts-alpha", cfg.darts_alpha)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name} must be a positive number, got {value}")
    if cfg.device is not None and cfg.device not in ("cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise UsageError(f"unknown device {cfg.device!r}: use cpu or cuda")
    if cfg.device and cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available: use --device cpu")
    if cfg.resume and cfg.out is None:
        raise UsageError("--resume needs --out DIR, the folder of the run to continue")
    if cfg.resume and not (Path(cfg.out) / "last.pt").is_file():
        raise UsageError(f"--resume: {Path(cfg.out) / 'last.pt'} does not exist: start a new run without --resume")
    if not cfg.resume and cfg.out is not None and (Path(cfg.out) / "last.pt").exists():
        raise UsageError(f"{cfg.out} already holds a run: pass --resume to continue it or choose another --out")


def validate_body(cfg: RunConfig, algo) -> None:
    """The network flags: --arch, --image-size, --pretrained, --train-body."""
    if cfg.dataset == "sine":
        for flag, value, default in (("arch", cfg.arch, None), ("pretrained", cfg.pretrained, None),
                                     ("train-body", cfg.train_body, "all"), ("image-size", cfg.image_size, 28)):
            if value != default:
                raise UsageError(f"--{flag} applies to image benchmarks; sine uses the MAML paper's MLP: drop --{flag}")
        return
    if cfg.arch is not None and cfg.arch not in IMAGE_ARCHS:
        raise UsageError(f"unknown --arch {cfg.arch!r}: choose one of {', '.join(IMAGE_ARCHS)}")
    if cfg.image_size < 8:
        raise UsageError(f"--image-size must be at least 8 pixels, got {cfg.image_size}")
    if cfg.arch not in (None, "conv4") and cfg.bn not in (None, "batch"):
        raise UsageError(f"--bn {cfg.bn} is available on conv4 only; {cfg.arch} normalises each set with its own "
                         "statistics: drop --bn")
    if cfg.pretrained == "imagenet" and cfg.arch in (None, "conv4"):
        raise UsageError("--pretrained imagenet needs a torchvision body (e.g. --arch resnet18); conv4 takes "
                         "--pretrained PATH")
    if cfg.pretrained not in (None, "imagenet") and not Path(cfg.pretrained).is_file():
        raise UsageError(f"--pretrained {cfg.pretrained}: no such file (give 'imagenet' or the path of a weights file)")
    if cfg.train_body not in TRAIN_BODY:
        raise UsageError(f"unknown --train-body {cfg.train_body!r}: choose one of {', '.join(TRAIN_BODY)}")
    if cfg.train_body != "all" and algo.adapt != "head":
        raise UsageError(f"--train-body {cfg.train_body} freezes body parameters that {algo.name}'s inner loop "
                         "would adapt: use it with anil, foanil or ianil")
    if cfg.train_body == "bn" and cfg.bn == "running":
        raise UsageError("--train-body bn keeps BatchNorm normalising with each set's statistics: drop --bn running")


def resolve_config(cfg: RunConfig) -> RunConfig:
    """Fill in the dataset's defaults, the device and the output folder (in place)."""
    chosen = get_algorithm(cfg.problem, head_only=cfg.head_only, grad=cfg.grad)
    for field, value in ALGORITHM_DEFAULTS.get((chosen.name, cfg.dataset), {}).items():
        if getattr(cfg, field) is None:
            setattr(cfg, field, value)
    for field, value in DATASET_DEFAULTS[cfg.dataset].items():
        if getattr(cfg, field) is None:
            setattr(cfg, field, value)
    if cfg.dataset != "sine" and cfg.arch is None:
        cfg.arch = "conv4"
    cfg.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    algo = get_algorithm(cfg.problem, cfg.first_order, cfg.head_only, cfg.grad)
    cfg.problem, cfg.first_order, cfg.grad, cfg.head_only = algo.name, algo.first_order, algo.grad, False
    if cfg.inner_steps is None:
        cfg.inner_steps = 5 if algo.proximal else 1
    if cfg.meta_eps is None:
        cfg.meta_eps = 1e-8
    if cfg.test_lam is None:
        cfg.test_lam = cfg.lam
    if cfg.cg_damping is None:
        cfg.cg_damping = 0.0
    if cfg.inner_optimizer is None:
        cfg.inner_optimizer = algo.inner_optimizer
    if cfg.test_inner_steps is None:
        cfg.test_inner_steps = cfg.inner_steps
    if cfg.out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        shape = f"{cfg.ways}w{cfg.shots}s" if cfg.ways else f"K{cfg.shots}"
        arch = "" if cfg.arch in (None, "conv4") else f"{cfg.arch}-"
        cfg.out = str(Path("runs") / f"{cfg.problem}-{arch}{cfg.dataset}-{shape}-{stamp}")
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare-grads"]:
        from .compare import main as compare_main
        return compare_main(argv[1:])
    if argv[:1] == ["pretrain-body"]:
        from .pretrain_body import main as pretrain_body_main
        return pretrain_body_main(argv[1:])
    if argv[:1] == ["scenarios"]:
        from .scenarios import main as scenarios_main
        return scenarios_main(argv[1:])
    try:
        cfg = parse_config(argv)
        from .experiment import train_and_test
        train_and_test(resolve_config(cfg))
    except UsageError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("run.py: interrupted; the last checkpoint in the output folder is intact (continue with --resume)",
              file=sys.stderr)
        return 130
    return 0
