"""Command line: ``python run.py --problem anil [options]``."""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from . import checkpoint
from .algorithms import ALGORITHMS, get_algorithm
from .errors import UsageError

DATASETS = ("omniglot",)
BN_NOTE = {"batch": "batch statistics of each task's support set and query set, normalised separately "
                    "(transductive, as in the MAML reference)"}


@dataclass
class RunConfig:
    """Everything a run depends on (also stored in its checkpoints)."""

    problem: str = "anil"
    dataset: str = "omniglot"
    data_root: Optional[str] = None
    download: bool = True
    ways: int = 5
    shots: int = 1
    queries: int = 1
    test_queries: int = 15
    inner_steps: int = 1
    test_inner_steps: Optional[int] = None
    inner_lr: float = 0.4
    meta_lr: float = 0.003
    meta_batch: int = 32
    iterations: int = 1000
    val_every: int = 100
    val_tasks: int = 100
    test_tasks: int = 600
    first_order: bool = False
    rotate: bool = True
    seed: int = 0
    device: str = "cpu"
    out: Optional[str] = None
    resume: bool = False
    progress: Optional[bool] = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = _Parser(prog="run.py", description="Meta-train a few-shot learner with Betty and report meta-test accuracy.",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--problem", default=d.problem, metavar="NAME",
                   help=f"algorithm: {', '.join(ALGORITHMS)} (anil/foanil adapt only the head in the inner loop)")
    p.add_argument("--dataset", default=d.dataset, metavar="NAME", help=f"benchmark: {', '.join(DATASETS)}")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder holding omniglot-py/ (torchvision layout); default ./data, downloaded if missing")
    p.add_argument("--no-download", dest="download", action="store_false", help="never download the data set")
    p.add_argument("--ways", type=int, default=d.ways, help="classes per task (N)")
    p.add_argument("--shots", type=int, default=d.shots, help="support examples per class (K)")
    p.add_argument("--queries", type=int, default=d.queries, help="query examples per class during meta-training")
    p.add_argument("--test-queries", type=int, default=d.test_queries,
                   help="query examples per class in validation and meta-test tasks")
    p.add_argument("--inner-steps", type=int, default=d.inner_steps, help="SGD steps of the inner loop (unrolled)")
    p.add_argument("--test-inner-steps", type=int, default=None,
                   help="inner steps at validation/test time (default: --inner-steps)")
    p.add_argument("--inner-lr", type=float, default=d.inner_lr, help="inner-loop SGD step size")
    p.add_argument("--meta-lr", type=float, default=d.meta_lr, help="Adam learning rate of the meta-parameters")
    p.add_argument("--meta-batch", type=int, default=d.meta_batch, help="tasks per outer step (B)")
    p.add_argument("--iterations", type=int, default=d.iterations, help="outer steps")
    p.add_argument("--val-every", type=int, default=d.val_every, help="validate (and checkpoint) every this many outer steps")
    p.add_argument("--val-tasks", type=int, default=d.val_tasks, help="held-out validation tasks (fixed for the run)")
    p.add_argument("--test-tasks", type=int, default=d.test_tasks, help="meta-test tasks for the final report")
    p.add_argument("--first-order", action="store_true", help="drop second-order terms of the meta-gradient")
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


def parse_config(argv: Optional[Sequence[str]] = None) -> RunConfig:
    args = build_parser().parse_args(argv)
    cfg = RunConfig(**vars(args))
    validate_config(cfg)
    return cfg


def validate_config(cfg: RunConfig) -> None:
    """Reject bad input with one actionable sentence."""
    get_algorithm(cfg.problem)
    if cfg.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {cfg.dataset!r}: choose one of {', '.join(DATASETS)}")
    counts = {"ways": cfg.ways, "shots": cfg.shots, "queries": cfg.queries, "test-queries": cfg.test_queries,
              "inner-steps": cfg.inner_steps, "meta-batch": cfg.meta_batch, "iterations": cfg.iterations,
              "val-every": cfg.val_every, "val-tasks": cfg.val_tasks, "test-tasks": cfg.test_tasks}
    if cfg.test_inner_steps is not None:
        counts["test-inner-steps"] = cfg.test_inner_steps
    for name, value in counts.items():
        if value < 1:
            raise UsageError(f"--{name} must be a positive integer, got {value}")
    if cfg.ways < 2:
        raise UsageError(f"--ways must be at least 2 for classification, got {cfg.ways}")
    for name, value in (("inner-lr", cfg.inner_lr), ("meta-lr", cfg.meta_lr)):
        if not (math.isfinite(value) and value > 0):
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


def _resolve(cfg: RunConfig) -> RunConfig:
    cfg.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.test_inner_steps is None:
        cfg.test_inner_steps = cfg.inner_steps
    algo = get_algorithm(cfg.problem, cfg.first_order)
    cfg.problem, cfg.first_order = algo.name, algo.first_order
    if cfg.out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cfg.out = str(Path("runs") / f"{cfg.problem}-{cfg.dataset}-{cfg.ways}w{cfg.shots}s-{stamp}")
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_and_test(cfg: RunConfig) -> dict:
    """Meta-train, then evaluate the best checkpoint on the meta-test tasks; returns the results."""
    from .data import ClassificationTasks, fixed_tasks, load_omniglot
    from .engines import EngineSettings, MetaEngine
    from .envs import EpisodicEnv
    from .evaluation import evaluate
    from .learner import Learner
    from .models import Conv4
    from .problems import AdaptProblem, MetaProblem

    cfg = _resolve(cfg)
    seed_everything(cfg.seed)
    algo = get_algorithm(cfg.problem)
    explicit_root = cfg.data_root is not None
    root = Path(cfg.data_root if explicit_root else "data")
    if not explicit_root:
        root.mkdir(exist_ok=True)
    splits = load_omniglot(root, download=cfg.download)
    train_tasks = ClassificationTasks(splits["train"], cfg.ways, cfg.shots, cfg.queries, cfg.rotate, "meta-train")
    val_tasks = ClassificationTasks(splits["val"], cfg.ways, cfg.shots, cfg.test_queries, False, "meta-validation")
    test_tasks = ClassificationTasks(splits["test"], cfg.ways, cfg.shots, cfg.test_queries, False, "meta-test")
    val_set = fixed_tasks(val_tasks, cfg.val_tasks, seed=cfg.seed + 1)
    test_set = fixed_tasks(test_tasks, cfg.test_tasks, seed=cfg.seed + 2)

    model = Conv4(cfg.ways).to(cfg.device)
    learner = Learner(model, algo, "cross_entropy")
    upper = MetaProblem(learner, torch.optim.Adam(model.parameters(), lr=cfg.meta_lr))
    lower = AdaptProblem(learner, cfg.inner_lr, cfg.inner_steps, algo.first_order)
    env = EpisodicEnv(train_tasks, cfg.meta_batch)
    out = Path(cfg.out)
    settings = EngineSettings(cfg.iterations, cfg.inner_steps, cfg.val_every, out, cfg.device, progress=cfg.progress)
    run_info = {"algorithm": algo.name, "arch": model.arch, "loss": "cross_entropy", "inner_lr": cfg.inner_lr,
                "inner_steps": cfg.inner_steps, "test_inner_steps": cfg.test_inner_steps, "bn_mode": "batch",
                "config": asdict(cfg)}

    def validate():
        return evaluate(learner, learner.meta_params(), val_set, [cfg.test_inner_steps], cfg.inner_lr)[cfg.test_inner_steps]

    engine = MetaEngine(upper, lower, env, settings, validate, run_info)
    start = engine.restore(checkpoint.load(out / "last.pt")) if cfg.resume else 0
    order = "first-order" if algo.first_order else "second-order"
    print(f"{algo.name} on {cfg.dataset}: {cfg.ways}-way {cfg.shots}-shot, {cfg.queries} query/class, meta-batch "
          f"{cfg.meta_batch}, {cfg.inner_steps} inner step(s) at lr {cfg.inner_lr} ({order}, unrolled), "
          f"Adam meta-lr {cfg.meta_lr}, {cfg.iterations} outer steps on {cfg.device}; output {out}", flush=True)
    t0 = time.perf_counter()
    best = engine.run(start)
    wall_time = time.perf_counter() - t0
    train_time, steps_done = engine.train_seconds, engine.steps_done

    state = checkpoint.load(out / "best.pt")
    model.load_state_dict(state["model"])
    t1 = time.perf_counter()
    result = evaluate(learner, learner.meta_params(), test_set, [0, cfg.test_inner_steps], cfg.inner_lr)
    test_time = time.perf_counter() - t1
    before, after = result[0], result[cfg.test_inner_steps]
    report = {
        "algorithm": algo.name, "dataset": cfg.dataset, "ways": cfg.ways, "shots": cfg.shots,
        "test_tasks": cfg.test_tasks, "test_queries": cfg.test_queries, "test_inner_steps": cfg.test_inner_steps,
        "bn_mode": "batch", "before_adaptation": asdict(before), "after_adaptation": asdict(after),
        "best_step": best["step"], "best_val": best["val_score"], "wall_seconds": round(wall_time, 1),
        "train_seconds": round(train_time, 1),
        "steps_per_second": round(steps_done / train_time, 3) if train_time > 0 else None,
        "test_seconds": round(test_time, 1), "config": asdict(cfg),
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"meta-test: {cfg.test_tasks} tasks from the Omniglot evaluation alphabets, {cfg.ways}-way {cfg.shots}-shot, "
          f"{cfg.test_queries} queries/class, {cfg.test_inner_steps} inner step(s) at lr {cfg.inner_lr}")
    print(f"  BatchNorm at test time: {BN_NOTE['batch']}")
    print(f"  accuracy before adaptation: {before.percent()}  (95% interval)")
    print(f"  accuracy after adaptation:  {after.percent()}  (95% interval)")
    print(f"  best checkpoint: {out / 'best.pt'} (step {best['step']}, validation {100 * best['val_score']:.2f}%)")
    print(f"  training: {steps_done} outer steps, {report['steps_per_second']} steps/s over {train_time:.1f} s of "
          f"outer steps; {wall_time:.1f} s wall time with validation; test evaluation {test_time:.1f} s", flush=True)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        cfg = parse_config(argv)
        train_and_test(cfg)
    except UsageError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("run.py: interrupted; the last checkpoint in the output folder is intact (continue with --resume)",
              file=sys.stderr)
        return 130
    return 0
