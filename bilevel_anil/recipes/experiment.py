"""One run: build the task suite, meta-train through the Engine, test the best checkpoint, report."""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..training.schema import RunCheckpoint, read_run
from ..core import distributed
from ..core.algorithms import Algorithm
from ..core.options import get_algorithm
from ..training.callbacks import Callback
from ..training.allocator import keep_freed_memory
from .run_config import RESUME_FIELDS, VALIDATION_FIELDS, RunConfig
from ..errors import UsageError
from ..settings import flag_of
from ..core.evaluation import Interval, evaluate
from ..api.meta_learner import MetaLearner
from ..models import TaskBatchedNet, parameter_counts, set_meta_trained
from ..training.pretrained import load_pretrained
from ..training.profiling import measure
from ..training.run_lock import RunFolderLock
from ..core.solvers import HypergradConfig
from ..data.registry import dataset_spec
from .suites import TaskSuite, build_suite

BN_NOTES = {
    "batch": "batch statistics of each task's support set and query set, normalised separately "
             "(transductive, as in the MAML reference)",
    "running": "running statistics accumulated during meta-training; each test example normalised on its own "
               "(not transductive)",
    "none": "none (the network has no BatchNorm)",
}


TRAIN_BODY_NOTES = {
    "all": "every parameter",
    "bn": "the head and the body's BatchNorm affine parameters (convolutions frozen)",
    "none": "the head only (body frozen)",
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resumable_state(path: Path, cfg: RunConfig) -> RunCheckpoint:
    """The checkpoint at ``path``, if ``cfg`` continues the same run; otherwise one line naming
    the first flag that differs from the checkpoint's."""
    saved_run = read_run(path, resume=True)
    saved = saved_run.run.get("config", {})
    for name in RESUME_FIELDS:
        if name in saved and saved[name] != getattr(cfg, name):
            flag = flag_of(RunConfig, name)
            raise UsageError(f"--resume: the run in {path.parent} was trained with {flag} {saved[name]}, not "
                             f"{getattr(cfg, name)}: drop {flag} (or give its old value), or start a new --out")
    if saved_run.step < cfg.iterations:
        for name in VALIDATION_FIELDS:
            if name in saved and saved[name] != getattr(cfg, name):
                flag = flag_of(RunConfig, name)
                raise UsageError(f"--resume: the run in {path.parent} validated with {flag} {saved[name]}; with "
                                 f"{getattr(cfg, name)} best.pt would be chosen by comparing scores of different "
                                 f"validation sets: drop {flag} (a finished run may be re-tested with other values)")
    return saved_run


def outer_optimizer(algo: Algorithm, cfg: RunConfig) -> tuple[Callable, Optional[Callable]]:
    """The outer optimiser of the meta-trained parameters (``params -> optimizer``) and its
    schedule (``optimizer -> scheduler`` or None): Adam with ``--meta-lr`` (and ``--meta-eps``);
    for Reptile, SGD whose step ε = ``--meta-lr`` falls linearly to 0 over ``--iterations`` (the
    Reptile paper's annealing)."""
    if algo.update == "interpolate":
        iterations = cfg.iterations
        return (lambda params: torch.optim.SGD(params, lr=cfg.meta_lr),
                lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                                    lambda i: max(0.0, 1.0 - i / iterations)))
    return (lambda params: torch.optim.Adam(params, lr=cfg.meta_lr, eps=cfg.meta_eps)), None


def train_and_test(cfg: RunConfig, callbacks: Sequence[Callback] = ()) -> dict:
    """Meta-train with a resolved config, then evaluate the best checkpoint; returns the report
    (also written to ``results.json`` in the output folder). The output folder is locked for the
    run's life (``RunFolderLock``): a second run on it stops with one line. ``callbacks``
    are ``MetaLearner.fit``'s (e.g. a wall-clock deadline)."""
    keep_freed_memory()  # as run.py does, for callers from Python (docs/results/speed.md)
    if not distributed.current().is_main:
        return _train_and_test(cfg, callbacks)
    existing = None if cfg.resume else \
        f"--out {cfg.out} already holds a run: continue it with --resume, or choose another --out"
    with RunFolderLock(Path(cfg.out), existing):  # a run that finished while this one started
        return _train_and_test(cfg, callbacks)


def _train_and_test(cfg: RunConfig, callbacks: Sequence[Callback] = ()) -> dict:
    seed_everything(cfg.seed)
    algo = get_algorithm(cfg.problem, cfg.first_order, grad=cfg.grad, inner_optimizer=cfg.inner_optimizer)
    suite = build_suite(cfg)
    model = suite.model
    pretrained = load_pretrained(model, cfg.pretrained) if cfg.pretrained else None
    set_meta_trained(model, cfg.train_body)
    counts = parameter_counts(model)
    model = model.to(cfg.device)
    group = distributed.current()
    optimizer, schedule = outer_optimizer(algo, cfg)
    hypergrad = HypergradConfig(cfg.hypergrad, cfg.hypergrad_iterations, cfg.neumann_alpha, cfg.darts_alpha,
                                cfg.cg_damping, cfg.cg_lam_damping)
    # run.py is a configuration of the Python API's learner and its training loop
    # (the settings of the proximal objective and of the implicit gradient only where they apply:
    # the learner refuses the others, as run.py does)
    proximal, implicit = algo.proximal, algo.grad == "implicit"
    meta = MetaLearner(model, algo, loss=suite.loss, inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps,
                       test_inner_steps=cfg.test_inner_steps, lam=cfg.lam if proximal else None,
                       test_lam=cfg.test_lam if proximal else None, hypergrad=hypergrad if implicit else None,
                       meta_lr=cfg.meta_lr, meta_optimizer=optimizer, inner_batch=cfg.inner_batch,
                       task_chunk=cfg.task_chunk, inner_proximal=cfg.inner_proximal if proximal else None,
                       head_init=cfg.head_init, device=cfg.device)
    out = Path(cfg.out)
    run_info = {"pretrained": pretrained, "train_body": cfg.train_body,
                "normalization": suite.normalization, "config": asdict(cfg)}
    if cfg.resume:
        resumable_state(out / "last.pt", cfg)  # the run's flags against the checkpoint's, before any work
    describe_run(cfg, algo, model, pretrained, group.world_size, group.active)
    print(f"parameters: {counts['total']:,} total, {counts['meta_trained']:,} meta-trained, "
          f"{counts['batchnorm']:,} BatchNorm", flush=True)
    t0 = time.perf_counter()
    # the public fit, as a user calls it (its lines name Python arguments; run.py shows its flags)
    run = measure(lambda: meta.fit(suite.train, cfg.iterations, meta_batch=cfg.meta_batch, validation=suite.val_set,
                                   val_every=cfg.val_every, out=out, time_budget=cfg.time_budget, resume=cfg.resume,
                                   progress=cfg.progress, callbacks=list(callbacks), schedule=schedule, log=cfg.log,
                                   metadata=run_info), cfg.device)
    fitted = run.value
    best = fitted.best
    wall_time = time.perf_counter() - t0
    train_time, steps_done = fitted.train_seconds, fitted.steps_done
    t1 = time.perf_counter()
    results, plot = _test(cfg, algo.name, suite, meta, f"{steps_done} outer steps this session, best step {best['step']}")
    test_time = time.perf_counter() - t1
    report = {
        "algorithm": algo.name, "grad": algo.grad, "dataset": cfg.dataset, "metric": suite.metric, "bn_mode": cfg.bn,
        "test_tasks": cfg.test_tasks, "test_queries": cfg.test_queries, "test_inner_steps": cfg.test_inner_steps,
        "inner_lr": cfg.inner_lr,
        "test": {label: {str(k): asdict(v) for k, v in r.items()} for label, r in results.items()},
        "best_step": best["step"], "best_val": best["val_score"], "wall_seconds": round(wall_time, 1),
        "train_seconds": round(train_time, 1),
        "steps_per_second": round(steps_done / train_time, 3) if train_time > 0 else None,
        "steps_done": steps_done, "processes": group.world_size,
        "test_seconds": round(test_time, 1),
        "arch": model.arch["name"], "pretrained": pretrained, "train_body": cfg.train_body, "parameters": counts,
        "peak_train_mib": None if run.peak_mib is None else round(run.peak_mib, 1),
        "last_train_loss": fitted.last_loss, "plot": str(plot) if plot else None, "config": asdict(cfg),
    }
    if group.is_main:
        (out / "results.json").write_text(json.dumps(report, indent=2))
    print(format_report(report, suite, out))
    return report


def _test(cfg: RunConfig, name: str, suite: TaskSuite, meta: MetaLearner, trained: str) -> tuple[dict, Optional[Path]]:
    """The meta-test of the best checkpoint's θ on every test set, and the sine tasks' plot."""
    theta = meta.learner.meta_params()
    results = {label: evaluate(meta.test_learner, theta, tasks, suite.test_steps, cfg.inner_lr)
               for label, tasks in suite.test_sets.items()}
    plot = None
    if suite.plot_samplers and distributed.current().is_main:
        from .plots import plot_sine_tasks
        plot = plot_sine_tasks(meta.learner, theta, suite.plot_samplers, cfg.inner_lr, [0, 1, 10],
                               Path(cfg.out) / "sine_tasks.png", f"{name}, trained with K={cfg.shots} ({trained})",
                               seed=cfg.seed + 10)
    return results, plot


def describe_run(cfg: RunConfig, algo: Algorithm, model, pretrained: Optional[str], processes: int,
                 parallel: bool) -> None:
    """Print what a run will do: the task shape, the inner and outer loops, the meta-gradient,
    the preset's source and the network, before the first step."""
    out = Path(cfg.out)
    if algo.grad == "implicit":
        how = (f"implicit, {cfg.hypergrad}" + ("" if cfg.hypergrad == "darts" else
                                               f" with {cfg.hypergrad_iterations} iterations"))
    else:
        how = ("first-order" if algo.first_order else "second-order") + ", unrolled"
    if algo.proximal:
        how += f", proximal λ={cfg.lam}"
        if cfg.inner_proximal == "pullback":
            how += " in one pull-back step after the support-loss steps"
        if algo.grad == "implicit" and (cfg.cg_damping or cfg.cg_lam_damping):
            how += f", CG system ((1 + {cfg.cg_damping})·I + H/(λ + {cfg.cg_lam_damping}))"
        if cfg.test_lam != cfg.lam:
            how += f"; test-time adaptation with λ={cfg.test_lam}"
    optimizer_name = "Adam (β1 = 0)" if algo.inner_optimizer == "adam" else "SGD"
    batch = f" on minibatches of {cfg.inner_batch}" if cfg.inner_batch else ""
    inner = f"{cfg.inner_steps} inner {optimizer_name} step(s){batch} at lr {cfg.inner_lr} ({how})"
    if algo.pretrain:
        start = "under the support set's prototype head" if cfg.head_init == "prototypes" else "at θ"
        tuned = (f"fine-tuned with {cfg.test_inner_steps} step(s) at lr {cfg.inner_lr}" if cfg.test_inner_steps
                 else "evaluated as it is (nearest centroid)" if cfg.head_init == "prototypes" else "not fine-tuned")
        inner = f"no adaptation in meta-training (query loss {start}), {tuned} for validation"
    outer = (f"Reptile step ε={cfg.meta_lr} annealed linearly to 0" if algo.update == "interpolate"
             else f"Adam meta-lr {cfg.meta_lr}")
    train_shots = f" ({cfg.train_shots} in meta-training)" if cfg.train_shots not in (None, cfg.shots) else ""
    shape = f"{cfg.ways}-way {cfg.shots}-shot{train_shots}, {cfg.queries} query/class" if cfg.ways else \
        f"K={cfg.shots}{train_shots} support and {cfg.queries} query points"
    length = f"{cfg.iterations} outer steps" + (f" or {cfg.time_budget:g} s" if cfg.time_budget else "")
    local_tasks = cfg.meta_batch // processes
    split = (f" in chunks of {cfg.task_chunk}" if cfg.task_chunk not in (None, local_tasks) else "") + \
        (f" over {processes} processes" if parallel else "")
    print(f"{algo.name} on {cfg.dataset}: {shape}, meta-batch {cfg.meta_batch}{split}, {inner}, {outer}, {length} "
          f"on {cfg.device}, BatchNorm: {cfg.bn}; output {out}", flush=True)
    if cfg.preset:
        from .presets import PRESETS
        print(f"preset {cfg.preset}: {PRESETS[cfg.preset].source}", flush=True)
    if dataset_spec(cfg.dataset).images:
        path = "generic per-task path" if isinstance(model, TaskBatchedNet) else "hand-written task-batched forward"
        print(f"network: {model.arch['name']} ({path}), "
              f"{cfg.image_size}x{cfg.image_size} inputs; body: {pretrained or 'random initialisation'}; "
              f"outer loop trains: {TRAIN_BODY_NOTES[cfg.train_body]}", flush=True)


def _short(x: float) -> str:
    """A table cell: three decimals, or three significant digits once the value is too wide."""
    return f"{x:.3f}" if abs(x) < 1e4 else f"{x:.2e}"


def format_report(report: dict, suite: TaskSuite, out: Path) -> str:
    """The human-readable summary printed at the end of a run."""
    lines = [f"meta-test: {suite.description}; {report['test_inner_steps']} inner step(s) at lr "
             f"{report['inner_lr']} unless stated",
             f"  BatchNorm at test time: {BN_NOTES[report['bn_mode']]}"]
    if report["metric"] == "accuracy":
        for label, by_steps in report["test"].items():
            before, after = Interval(**by_steps["0"]), Interval(**by_steps[str(report["test_inner_steps"])])
            lines.append(f"  accuracy before adaptation: {before.percent()}  (95% interval)")
            lines.append(f"  accuracy after adaptation:  {after.percent()}  (95% interval)")
        best = f"validation {100 * report['best_val']:.2f}%"
    else:
        steps = list(next(iter(report["test"].values())))
        lines.append("  query MSE, mean ± 95% interval, after this many inner steps:")
        lines.append("        " + "".join(f"{k + ' steps':>18}" for k in steps))
        for label, by_steps in report["test"].items():
            cells = "".join(f"{_short(v['mean']):>10} ± {_short(v['ci95']):<5}" for v in by_steps.values())
            lines.append(f"  {label:<6}" + cells)
        lines.append("  median over tasks:")
        for label, by_steps in report["test"].items():
            lines.append(f"  {label:<6}" + "".join(f"{_short(v['median']):>18}" for v in by_steps.values()))
        diverged = {f"{label} after {k}": v["nonfinite"] for label, by_steps in report["test"].items()
                    for k, v in by_steps.items() if v["nonfinite"]}
        if diverged:
            lines.append(f"  tasks whose inner loop diverged (non-finite MSE): {diverged}")
        best = f"validation MSE {report['best_val']:.4f}"
    lines.append(f"  best checkpoint: {out / 'best.pt'} (step {report['best_step']}, {best})")
    if report["plot"]:
        lines.append(f"  plot of test tasks: {report['plot']}")
    if report["steps_done"]:
        lines.append(f"  training: {report['steps_done']} outer steps this session, {report['steps_per_second']} steps/s over "
                     f"{report['train_seconds']} s of outer steps; {report['wall_seconds']} s wall time with validation; "
                     f"test evaluation {report['test_seconds']} s")
    else:  # --resume of a run that had already reached --iterations: only the test ran
        lines.append(f"  training: no outer steps this session (the checkpoint had reached --iterations); "
                     f"test evaluation {report['test_seconds']} s")
    return "\n".join(lines)
