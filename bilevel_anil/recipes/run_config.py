"""The run configuration: every setting a run depends on, its defaults, its checks, and its
resolution (dataset and algorithm defaults, device, output folder)."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Optional

import torch

from ..core import distributed
from ..core.algorithms import GRADS, evaluation_steps
from ..core.options import SCOPES, check_options, get_algorithm
from ..data.registry import DATASETS, dataset_spec
from ..errors import (UsageError, require_device, require_output, require_positive_integers,
                      require_seed)
from ..core.learner import check_head_init
from ..training.metrics_log import LOGGERS, summary_writer_class
from ..models import BODIES, TORCHVISION_BODIES, TRAIN_BODY, smallest_image_size
from ..models.conv4 import BN_MODES
from .presets import algorithm_settings
from ..settings import fields_marked, flag_of, setting, shared

# Settings whose default depends on the benchmark (None in RunConfig means "the dataset's
# default"), each stated in its data set's spec (bilevel_anil.data.registry).
DATASET_DEFAULTS: dict[str, dict[str, object]] = {name: spec.defaults for name, spec in DATASETS.items()}


# The implicit gradient assumes a solved inner problem. For ianil on Omniglot, 5 head steps
# at lr 0.4 or 0.1 diverged in meta-training; 100 steps at lr 0.02 learned (docs/results/omniglot.md).
# Head steps are cheap: the body runs once per outer step.
ALGORITHM_DEFAULTS: dict[tuple[str, str], dict[str, object]] = {
    ("ianil", "omniglot"): {"inner_steps": 100, "inner_lr": 0.02},
    # the papers' settings, taken from their presets (presets.py states the sources)
    ("imaml", "omniglot"): algorithm_settings("imaml-omniglot-5w1s"),
    ("reptile", "omniglot"): algorithm_settings("reptile-omniglot-5w1s"),
    # measured here (docs/results/imaml.md, iMAML on sine): with λ = 2 and the exact implicit gradient, or the
    # damped system at λ = 2, meta-training did not learn or diverged; λ = 10 with the damped
    # system learned steadily
    ("imaml", "sine"): {"lam": 10.0, "cg_damping": 1.0, "cg_lam_damping": 10.0},
    ("reptile", "sine"): algorithm_settings("reptile-sine"),
}


R, V = "resume", "validation"  # marks: what a resumed run must keep; what its validation score depends on


@dataclass
class RunConfig:
    """Everything a run depends on (also stored in its checkpoints). ``None`` fields take the
    dataset's default (``DATASET_DEFAULTS``). Each field is its own ``run.py`` flag (the
    parser and ``--help`` are generated from these declarations, ``bilevel_anil.settings``);
    fields marked ``resume`` must match the checkpoint a run resumes from, ``validation`` too
    while it still trains (best.pt is chosen by comparing validation scores)."""

    preset: Optional[str] = setting(None, "a paper's protocol (flags given explicitly override it): {presets}; each "
                                    "one's source is printed at the start of the run and listed in docs/guide/presets.md",
                                    metavar="NAME")
    problem: str = setting("anil", "algorithm: {algorithms} (anil/foanil/ianil adapt only the head in the inner loop; "
                           "imaml/ianil add a proximal term to it and use the implicit meta-gradient; pretrain: the "
                           "MAML paper's baseline, trained on the query loss without adaptation, fine-tuned at test; "
                           "reptile: moves θ towards each task's adapted weights; default anil)",
                           metavar="NAME", mark=R)
    dataset: str = setting("omniglot", "benchmark: {datasets} (sine: the MAML paper's sine-wave regression; "
                           "mini-imagenet, tiered-imagenet and fc100 are published as Python pickles, read from "
                           "--data-root only, with an unpickler that admits arrays, dicts, lists and strings alone; "
                           "folder: your own images in --data-root/{{train,val,test}}/<class>/*)",
                           metavar="NAME", mark=R)
    data_root: Optional[str] = shared("data_root")
    download: bool = shared("download")
    ways: Optional[int] = setting(None, "classes per task (N), classification only; {dd[ways]}", mark=R)
    shots: Optional[int] = setting(None, "support examples per class (K; for sine: support points) in training; "
                                   "{dd[shots]}", mark=R)
    train_shots: Optional[int] = setting(None, "support examples per class (sine: points) in meta-training tasks "
                                         "only (default: --shots; reptile on omniglot 10, on sine 50)", mark=R)
    inner_batch: Optional[int] = setting(None, "examples per task in each inner step, taken in a random order "
                                         "(default: the whole support set; reptile 10)", metavar="N", mark=R)
    queries: Optional[int] = setting(None, "query examples per class (sine: query points) in meta-training; "
                                     "{dd[queries]}", mark=R)
    test_queries: Optional[int] = setting(None, "query examples per class (sine: points) in validation and test "
                                          "tasks; {dd[test_queries]}", mark=V)
    inner_steps: Optional[int] = setting(None, "steps of the inner loop (default: 1; imaml/ianil 5; on omniglot: "
                                         "imaml 16, ianil 100, reptile 5)", mark=R)
    test_inner_steps: Optional[int] = setting(None, "inner steps at validation/test time (default: --inner-steps; "
                                              "protonet 0, its nearest-centroid classifier)",
                                              mark=V)
    inner_lr: Optional[float] = setting(None, "inner-loop step size; {dd[inner_lr]}; on omniglot: imaml 0.1, "
                                        "ianil 0.02, reptile 0.001", mark=R)
    meta_lr: Optional[float] = setting(None, "Adam learning rate of the meta-parameters; {dd[meta_lr]}", mark=R)
    meta_eps: Optional[float] = setting(None, "epsilon of the outer Adam (default 1e-8)", mark=R)
    inner_optimizer: Optional[str] = setting(None, "inner-loop optimiser: {inner_optimizers} (adam: β1 = 0, as in "
                                             "Reptile; default sgd, reptile adam on omniglot)", metavar="NAME", mark=R)
    meta_batch: Optional[int] = setting(None, "tasks per outer step (B); {dd[meta_batch]}", mark=R)
    task_chunk: Optional[int] = setting(None, "run each outer step's tasks C at a time and accumulate the "
                                        "meta-gradient: the same step with memory for C tasks instead of B (C divides "
                                        "the tasks of each process; default: all)", metavar="C")
    iterations: Optional[int] = setting(None, "outer steps; {dd[iterations]}")
    val_every: Optional[int] = setting(None, "validate (and checkpoint) every this many outer steps; "
                                       "{dd[val_every]}")
    val_tasks: Optional[int] = setting(None, "held-out validation tasks (fixed for the run); {dd[val_tasks]}",
                                       mark=V)
    test_tasks: int = setting(600, "meta-test tasks for the final report")
    time_budget: Optional[float] = setting(None, "stop meta-training after this many seconds of outer steps "
                                           "(validation excluded), validating and checkpointing there: compares "
                                           "algorithms at equal compute; the step count then depends on the machine",
                                           metavar="SECONDS")
    first_order: bool = setting(False, "drop second-order terms of the unrolled meta-gradient (maml -> fomaml, "
                                "anil -> foanil)", mark=R)
    head_only: bool = setting(False, "adapt only the head in the inner loop (maml -> anil, imaml -> ianil)")
    grad: Optional[str] = setting(None, "meta-gradient: {grads} (default: implicit for imaml/ianil, unrolled "
                                  "otherwise); the inner objective stays the same, only the Betty lower problem "
                                  "changes", metavar="HOW", mark=R)
    lam: Optional[float] = setting(None, "imaml/ianil: proximal strength λ of the inner objective support loss + "
                                   "(λ/2)·‖φ − θ‖² (default 2; imaml on sine 10)", mark=R)
    test_lam: Optional[float] = setting(None, "imaml/ianil: λ of the proximal term when adapting at validation and "
                                        "test time (default --lam; imaml on omniglot 0, as the iMAML authors "
                                        "evaluate)", mark=V)
    cg_damping: Optional[float] = setting(None, "imaml/ianil with --hypergrad cg: CG solves ((1 + D)·I + H/(λ + C)) "
                                          "x = ∇L instead of (I + H/λ) x = ∇L (H: the support loss's Hessian); "
                                          "default 0, imaml 1 (the iMAML authors' code)", metavar="D", mark=R)
    cg_lam_damping: Optional[float] = setting(None, "the C above (default 0; imaml 10, the authors' fixed "
                                              "lam_damping)", metavar="C", mark=R)
    inner_proximal: Optional[str] = setting(None, "imaml/ianil: every (the proximal term in every inner step, the "
                                            "paper's objective; the default) or pullback (the authors' code: the "
                                            "inner steps on the support loss alone, then one step on the proximal "
                                            "term; the default of imaml on Omniglot)", metavar="WHERE", mark=R)
    head_init: Optional[str] = setting(None, "where each task's inner loop starts the head: learned (the "
                                       "meta-learned head, as MAML and ANIL do; the default), zero, or prototypes "
                                       "(Proto-MAML: w_c = 2·μ_c, b_c = −‖μ_c‖² from the support set's class means "
                                       "at θ; classification only; protonet's default)", metavar="HOW", mark=R)
    hypergrad: str = setting("cg", "implicit gradient's inverse-Hessian approximation: {hypergrads} (cg: textbook "
                             "conjugate gradient; betty-cg: Betty 0.2.1's own CG, kept for comparison)",
                             metavar="METHOD", mark=R)
    hypergrad_iterations: int = setting(5, "CG iterations (Hessian-vector products) or Neumann series terms", mark=R)
    neumann_alpha: float = setting(0.1, "Neumann series step size (converges when below 2 / largest eigenvalue of "
                                   "the inner Hessian)")
    darts_alpha: float = setting(0.01, "DARTS finite-difference radius")
    bn: Optional[str] = setting(None, "BatchNorm statistics (Conv4): {bn_modes}; {dd[bn]}. batch: each set's own "
                                "statistics, also at test time (transductive, the MAML reference); running: running "
                                "statistics from meta-training at test time (each example on its own)",
                                metavar="MODE", mark=R)
    arch: Optional[str] = setting(None, "network for images: {archs} (default conv4; sine always uses its MLP). "
                                  "conv4 runs its hand-written task-batched forward, the torchvision bodies the "
                                  "generic per-task path (vmap over functional_call); the head is a new linear layer "
                                  "of --ways outputs", metavar="NAME", mark=R)
    image_size: Optional[int] = setting(None, "Omniglot and folder images are resized to this square size (Omniglot "
                                        "28 as in the MAML/ANIL papers; folder 84)", metavar="PIXELS", mark=R)
    channels: Optional[int] = setting(None, "--dataset folder: 1 (grey) or 3 (RGB, the default) input channels",
                                      metavar="C", mark=R)
    pretrained: Optional[str] = setting(None, "initialise the body from 'imagenet' (torchvision's weights, "
                                        "downloaded into torch's cache) or from a file: a state_dict, a torchvision "
                                        "checkpoint, a run's best.pt, or the output of run.py pretrain-body",
                                        metavar="SOURCE", mark=R)
    train_body: str = setting("all", "what of the body the outer loop trains: {train_body} (bn: convolutions "
                              "frozen, BatchNorm affine parameters meta-trained; none: head only); bn/none need an "
                              "algorithm that adapts only the head (anil, foanil, ianil)", metavar="WHAT", mark=R)
    rotate: bool = setting(True, "no random 90-degree class rotations in meta-training tasks", flag="--no-rotate",
                           mark=R)
    seed: int = shared("seed", mark=R)
    device: Optional[str] = shared("device")
    out: Optional[str] = shared("out")
    resume: bool = setting(False, "continue the run in --out from its last.pt")
    progress: Optional[bool] = shared("progress")
    log: str = setting("csv", "csv: metrics.csv only; tensorboard: also TensorBoard events in OUT/tensorboard (the "
                       "same scalars; needs pip install tensorboard)", metavar="WHERE")


# what the trained parameters depend on: a resumed run must keep these as they were
RESUME_FIELDS = fields_marked(RunConfig, R)
# what the validation score depends on: while a resumed run still trains, best.pt is chosen by
# comparing scores, which must come from the same validation tasks (a finished run's re-test
# may change them)
VALIDATION_FIELDS = fields_marked(RunConfig, V)


def flag_scopes_help() -> str:
    """The scope table as one sentence for ``--help``."""
    by_scope: dict[str, list[str]] = {}
    for field, (scope, _) in SCOPES.items():
        by_scope.setdefault(scope, []).append(flag_of(RunConfig, field))
    return "Flags for some algorithms only (refused elsewhere): " + "; ".join(
        f"{', '.join(flags)}: {scope}" for scope, flags in by_scope.items()) + "."


def run_algorithm(cfg: RunConfig):
    """The algorithm of a run's settings (``--problem`` with ``--first-order``, ``--head-only``,
    ``--grad`` and ``--inner-optimizer``), under the option rules of ``core.options``."""
    if cfg.grad is not None and cfg.grad not in GRADS:
        raise UsageError(f"unknown --grad {cfg.grad!r}: choose one of {', '.join(GRADS)}")
    return get_algorithm(cfg.problem, cfg.first_order, cfg.head_only, cfg.grad, cfg.inner_optimizer, strict=True)


def _options(cfg: RunConfig) -> dict[str, object]:
    """The run's settings that the option rules check, by their (shared) names."""
    names = ("inner_lr", "inner_steps", "test_inner_steps", "lam", "test_lam", "hypergrad", "hypergrad_iterations",
             "meta_lr", "meta_eps", "inner_batch", "task_chunk", "inner_proximal", "head_init", "neumann_alpha",
             "darts_alpha", "cg_damping", "cg_lam_damping")
    return {name: getattr(cfg, name) for name in names}


def validate_config(cfg: RunConfig, explicit: Collection[str] = ()) -> None:
    """Reject bad input with one actionable sentence (before dataset defaults are filled in):
    the option rules of ``core.options`` (which also refuse a flag in ``explicit`` that the
    algorithm does not use; their lines name the Python arguments, which the command line
    shows as its flags), then the data set's, the network's and the files'."""
    algo = run_algorithm(cfg)
    check_options(algo, _options(cfg), given=explicit)
    spec = dataset_spec(cfg.dataset)
    validate_body(cfg, algo)
    if not spec.images:
        if cfg.ways is not None:
            raise UsageError(f"--ways applies to classification; {spec.title} has no classes: drop --ways")
        if cfg.bn is not None:
            raise UsageError(f"--bn applies to the image networks; {spec.title}'s MLP has no BatchNorm: drop --bn")
    elif cfg.bn is not None and cfg.bn not in BN_MODES:
        raise UsageError(f"unknown BatchNorm mode {cfg.bn!r}: choose one of {', '.join(BN_MODES)}")
    check_head_init(cfg.head_init or algo.head_init, algo, spec.images,
                    label=f"--head-init {cfg.head_init}" if cfg.head_init else algo.name,
                    fix="drop --head-init" if cfg.head_init else "use another --problem",
                    data=f"{spec.title} has none")
    require_positive_integers({"ways": cfg.ways, "shots": cfg.shots, "train-shots": cfg.train_shots,
                               "queries": cfg.queries, "test-queries": cfg.test_queries,
                               "meta-batch": cfg.meta_batch, "iterations": cfg.iterations, "val-every": cfg.val_every,
                               "val-tasks": cfg.val_tasks, "test-tasks": cfg.test_tasks})
    if cfg.ways is not None and cfg.ways < 2:
        raise UsageError(f"--ways must be at least 2 for classification, got {cfg.ways}")
    if cfg.time_budget is not None and not (math.isfinite(cfg.time_budget) and cfg.time_budget > 0):
        raise UsageError(f"--time-budget must be a positive number of seconds, got {cfg.time_budget}")
    require_device(cfg.device)
    require_seed(cfg.seed)
    require_output(cfg.out)
    if cfg.log not in LOGGERS:
        raise UsageError(f"unknown --log {cfg.log!r}: choose one of {', '.join(LOGGERS)}")
    if cfg.log == "tensorboard":
        summary_writer_class()  # installed? (one line saying how, before any work)
    if cfg.resume and cfg.out is None:
        raise UsageError("--resume needs --out DIR, the folder of the run to continue")
    if cfg.resume and not (Path(cfg.out) / "last.pt").is_file():
        raise UsageError(f"--resume: {Path(cfg.out) / 'last.pt'} does not exist: start a new run without --resume")
    if not cfg.resume and cfg.out is not None and (Path(cfg.out) / "last.pt").exists():
        raise UsageError(f"{cfg.out} already holds a run: pass --resume to continue it or choose another --out")


def validate_body(cfg: RunConfig, algo) -> None:
    """The network flags: --arch, --image-size, --channels, --pretrained, --train-body."""
    spec = dataset_spec(cfg.dataset)
    if cfg.channels is not None and spec.channels is not None:
        raise UsageError(f"--channels applies to --dataset folder; {spec.title}'s inputs have "
                         f"{spec.channels if spec.images else 'no image'} channel(s): drop --channels")
    if cfg.channels is not None and cfg.channels not in (1, 3):
        raise UsageError(f"--channels must be 1 (grey) or 3 (RGB), got {cfg.channels}")
    if not spec.images:
        for flag, value, default in (("arch", cfg.arch, None), ("pretrained", cfg.pretrained, None),
                                     ("train-body", cfg.train_body, "all"), ("image-size", cfg.image_size, None)):
            if value != default:
                raise UsageError(f"--{flag} applies to image benchmarks; {spec.title} uses its own MLP: drop --{flag}")
        return
    if cfg.arch is not None and cfg.arch not in BODIES:
        raise UsageError(f"unknown --arch {cfg.arch!r}: choose one of {', '.join(BODIES)}")
    if spec.image_size is not None and cfg.image_size is not None:
        raise UsageError(f"--image-size applies to Omniglot and --dataset folder; {spec.title}'s images are "
                         f"{spec.image_size}x{spec.image_size}: drop --image-size")
    smallest = smallest_image_size(cfg.arch or "conv4")
    if cfg.image_size is not None and cfg.image_size < smallest:
        raise UsageError(f"--image-size must be at least {smallest} pixels for {cfg.arch or 'conv4'} (smaller inputs "
                         f"vanish in its poolings), got {cfg.image_size}")
    modes = BODIES[cfg.arch or "conv4"].bn_modes
    if cfg.bn in BN_MODES and cfg.bn not in modes:  # (an unknown mode: validate_config says so)
        raise UsageError(f"--bn {cfg.bn} is not available on {cfg.arch or 'conv4'}, which supports {', '.join(modes)} "
                         "(each set normalised with its own statistics): drop --bn")
    if cfg.pretrained == "imagenet" and (cfg.arch or "conv4") not in TORCHVISION_BODIES:
        raise UsageError(f"--pretrained imagenet needs a torchvision body ({', '.join(TORCHVISION_BODIES)}); "
                         f"{cfg.arch or 'conv4'} takes --pretrained PATH")
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
    """A new config: ``cfg`` with the dataset's and the algorithm's defaults, the device and the
    output folder filled in (``cfg`` itself is left as it was)."""
    cfg = dataclasses.replace(cfg)
    chosen = get_algorithm(cfg.problem, head_only=cfg.head_only, grad=cfg.grad)
    for field, value in ALGORITHM_DEFAULTS.get((chosen.name, cfg.dataset), {}).items():
        if getattr(cfg, field) is None:
            setattr(cfg, field, value)
    if chosen.pretrain and cfg.inner_steps is None:
        cfg.inner_steps = 1  # no inner loop in meta-training, whatever the data set's default
    spec = dataset_spec(cfg.dataset)
    for field, value in spec.defaults.items():
        if getattr(cfg, field) is None:
            setattr(cfg, field, value)
    if spec.images and cfg.arch is None:
        cfg.arch = "conv4"
    if spec.images and cfg.image_size is None:
        cfg.image_size = spec.size(cfg)
    if spec.images and spec.channels is None and cfg.channels is None:
        cfg.channels = spec.input_channels(cfg)
    cfg.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    group = distributed.current()
    if group.active and cfg.device == "cuda":
        cfg.device = f"cuda:{group.local_rank}"  # one GPU per process
    distributed.check_task_split(cfg.meta_batch, cfg.task_chunk, group.world_size)
    algo = get_algorithm(cfg.problem, cfg.first_order, cfg.head_only, cfg.grad)
    cfg.problem, cfg.first_order, cfg.grad, cfg.head_only = algo.name, algo.first_order, algo.grad, False
    if cfg.inner_steps is None:
        cfg.inner_steps = 5 if algo.proximal else 1
    if cfg.meta_eps is None:
        cfg.meta_eps = 1e-8
    if cfg.lam is None:
        cfg.lam = 2.0
    if cfg.test_lam is None:
        cfg.test_lam = cfg.lam
    if cfg.inner_proximal is None:
        cfg.inner_proximal = "every"
    if cfg.cg_damping is None:
        cfg.cg_damping = 0.0
    if cfg.cg_lam_damping is None:
        cfg.cg_lam_damping = 0.0
    if cfg.inner_optimizer is None:
        cfg.inner_optimizer = algo.inner_optimizer
    if cfg.head_init is None:
        cfg.head_init = algo.head_init
    if cfg.test_inner_steps is None:
        cfg.test_inner_steps = evaluation_steps(algo, cfg.head_init, cfg.inner_steps)
    check_memory(cfg)
    if cfg.out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        shape = f"{cfg.ways}w{cfg.shots}s" if cfg.ways else f"K{cfg.shots}"
        arch = "" if cfg.arch in (None, "conv4") else f"{cfg.arch}-"
        cfg.out = group.broadcast_object(str(Path("runs") / f"{cfg.problem}-{arch}{cfg.dataset}-{shape}-{stamp}"))
    return cfg


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``); None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def task_tensor_bytes(cfg: RunConfig) -> dict[str, int]:
    """The bytes of what a resolved config materialises before the first step, by the flag
    that sets each: one meta-batch of inputs, the fixed validation and test tasks (float32),
    and the decoded images a data set holds (uint8). A lower bound of the run's memory (activations
    come on top): settings that cannot fit are refused before anything is allocated."""
    spec = dataset_spec(cfg.dataset)
    if not spec.images:
        pixels, ways, decoded, test_sets = 1, 1, 0, 2
    else:
        size = spec.size(cfg)
        pixels = spec.input_channels(cfg) * size * size
        ways, test_sets = cfg.ways, 1
        decoded = spec.decoded_images * size * size

    def per_task(shots: int, queries: int) -> int:
        return ways * (shots + queries) * pixels * 4

    return {"--meta-batch": cfg.meta_batch * per_task(cfg.train_shots or cfg.shots, cfg.queries),
            "--val-tasks": cfg.val_tasks * per_task(cfg.shots, cfg.test_queries),
            "--test-tasks": test_sets * cfg.test_tasks * per_task(cfg.shots, cfg.test_queries),
            "--image-size": decoded}


def check_memory(cfg: RunConfig, available: Optional[int] = None) -> None:
    """One line when the task tensors of ``cfg`` alone exceed the memory available."""
    available = available_memory() if available is None else available
    if available is None:
        return
    need = task_tensor_bytes(cfg)
    total = sum(need.values())
    if total > available:
        flag = max(need, key=need.get)

        def gib(b: float) -> str:
            return f"{b / 2 ** 30:,.1f} GiB"

        parts = ", ".join(f"{gib(b)} for {f}" for f, b in sorted(need.items(), key=lambda kv: -kv[1])
                          if b >= 2 ** 26)
        pixels = " or --image-size" if dataset_spec(cfg.dataset).decoded_images and cfg.image_size > 28 else ""
        raise UsageError(f"these settings need at least {gib(total)} for their task tensors alone ({parts}); this "
                         f"machine has {gib(available)} available: lower {flag}{pixels}")
