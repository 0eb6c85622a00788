"""``run.py pipeline``: pretrain → meta-train → fine-tune within one wall-clock budget.

The recipe of P>M>F (Hu et al. 2022) at small compute:

1. **pretrain** the body as an ordinary classifier over the meta-training classes for
   ``pretrain_share`` of the budget (``bilevel_anil.recipes.pretrain_body``); its nearest-centroid
   classifier (the rule best on validation) is the first row of the report;
2. **meta-train** from that body for the rest of the budget (``run.py``'s training, default
   protonet; anil and the others start each task's head from the support prototypes with
   ``head_init="prototypes"``), stopped by a wall-clock deadline;
3. **fine-tune** at test time as the validation tasks prefer (``bilevel_anil.recipes.fine_tune``:
   the head or the whole network, how many steps, which step size).

Every stage is tested on the same meta-test tasks. The output folder holds ``pretrain/body.pt``,
``meta/`` (an ordinary run folder: ``best.pt`` loads with ``bilevel_anil.load``),
``pipeline.json`` and ``report.md`` (the stage table) and ``accuracy_vs_time.png``.
The budget counts wall seconds of training (data loading, pretraining epochs, outer steps and
their validations); the tests after it are extra and reported.

Example::

    >>> from bilevel_anil.recipes.pipeline import PipelineConfig, run_pipeline
    >>> cfg = PipelineConfig(data_root="data", ways=5, shots=1, time_budget=600)  # doctest: +SKIP
    >>> report = run_pipeline(cfg)  # doctest: +SKIP
    >>> [row["stage"] for row in report["stages"]]  # doctest: +SKIP
    ['pretraining only', '+ meta-training', '+ fine-tuning']
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import UsageError
from ..settings import setting, shared
from ..training.budget import Budget


@dataclass(frozen=True)
class PipelinePreset:
    source: str
    values: dict


PIPELINE_PRESETS: dict[str, PipelinePreset] = {
    # budgets leave room for the tests after training: measured on 2 cores, about 130 s at 5 ways and
    # 424 s at 20 ways (docs/runs/pipeline-*)
    "omniglot-5w1s": PipelinePreset("target: Omniglot 5-way 1-shot within 10 minutes of wall time, tests "
                                    "included, on 2 CPU cores",
                                    {"dataset": "omniglot", "ways": 5, "shots": 1, "time_budget": 440.0}),
    "omniglot-20w1s": PipelinePreset("target: Omniglot 20-way 1-shot within 20 minutes of wall time, tests "
                                     "included, on 2 CPU cores",
                                     {"dataset": "omniglot", "ways": 20, "shots": 1, "time_budget": 760.0}),
    "mini-imagenet-5w1s": PipelinePreset("mini-ImageNet 5-way 1-shot, Conv4-32 at 84 pixels, one hour",
                                         {"dataset": "mini-imagenet", "ways": 5, "shots": 1, "arch": "conv4-32",
                                          "time_budget": 3600.0}),
    "cifar-fs-5w1s": PipelinePreset("CIFAR-FS 5-way 1-shot, Conv4 at 32 pixels, 30 minutes",
                                    {"dataset": "cifar-fs", "ways": 5, "shots": 1, "time_budget": 1800.0}),
}


@dataclass
class PipelineConfig:
    """The settings of ``run.py pipeline``: each field is the flag of the same name.

    Each field's flag, meaning and default are listed below, on the
    [Every flag](guide/cli-reference.md) page and by ``run.py pipeline --help``, all from one
    declaration per field. A ``preset`` fills the task shape and budget of a target.
    ``run_pipeline`` runs it (its example runs one on a small folder data set).

    Examples:
        >>> cfg = PipelineConfig(dataset="folder", data_root="my_images", ways=5, shots=1, time_budget=600)
        >>> cfg.pretrain_share, cfg.problem, cfg.head_init
        (0.5, 'protonet', 'prototypes')
    """

    preset: Optional[str] = setting(None, "budget and task shape of a target (flags given explicitly override it): "
                                    "{presets}", metavar="NAME")
    dataset: str = setting("omniglot", "data set: {datasets}", metavar="NAME")
    data_root: Optional[str] = shared("data_root")
    download: bool = shared("download")
    ways: int = setting(5, "classes per task")
    shots: int = setting(1, "support examples per class")
    time_budget: float = setting(600.0, "wall seconds of training: data loading, pretraining, meta-training and "
                                        "their validations (the tests after it are extra, and reported)",
                                 metavar="SECONDS")
    pretrain_share: float = setting(0.5, "fraction of --time-budget spent pretraining the body (0: meta-train a "
                                         "random body)", metavar="FRACTION")
    arch: str = setting("conv4", "body: {archs}", metavar="NAME")
    image_size: Optional[int] = setting(None, "input size in pixels (default: the data set's)", metavar="PIXELS")
    channels: int = setting(3, "--dataset folder: 1 (grey) or 3 (RGB)")
    problem: str = setting("protonet", "meta-training algorithm: {algorithms}", metavar="NAME")
    head_init: str = setting("prototypes", "where each task's head starts in meta-training and at test: learned, "
                                           "zero or prototypes", metavar="HOW")
    pretrain_lr: float = setting(3e-3, "pretraining: Adam learning rate (cosine schedule over its share)")
    pretrain_batch_size: int = setting(128, "pretraining: minibatch size")
    pretrain_rotations: bool = setting(False, "pretraining: add the rotated classes, as run.py pretrain-body does "
                                              "(Omniglot; slower to learn in a short budget, see docs/results/pipeline.md)")
    meta_lr: float = setting(3e-4, "meta-training: Adam learning rate (a tenth of a run's default on Omniglot: at "
                                   "3e-3 meta-training undid what pretraining gave, see docs/results/pipeline.md)")
    queries: int = setting(5, "meta-training: query examples per class")
    test_queries: Optional[int] = setting(None, "query examples per class of the validation and test tasks "
                                                "(default: the data set's, 15 on Omniglot)")
    fine_tune: str = setting("choose", "test-time fine-tuning: choose (the best on validation of: the head or the "
                                       "whole network, 0 to 4x the inner steps, two step sizes) or none")
    val_tasks: int = setting(200, "validation tasks (each stage's choices are made on them)")
    fine_tune_tasks: int = setting(50, "the first this many validation tasks choose the fine-tuning (every option "
                                       "adapts on each of them: the cost grows with the ways)")
    test_tasks: int = setting(600, "meta-test tasks (the same for every stage)")
    seed: int = shared("seed")
    device: Optional[str] = shared("device")
    out: Optional[str] = shared("out")
    progress: Optional[bool] = shared("progress")


def validate_config(cfg: PipelineConfig) -> None:
    """One line for the first setting that cannot run (before any data is read)."""
    from ..core.algorithms import ALGORITHMS
    from ..data.registry import DATASETS
    from ..errors import require_device, require_output, require_positive_integers, require_seed
    from ..core.options import HEAD_INITS
    from .pretrain_body import BodyPretrainConfig, validate_config as validate_pretraining

    if not (isinstance(cfg.time_budget, (int, float)) and math.isfinite(cfg.time_budget) and cfg.time_budget > 0):
        raise UsageError(f"--time-budget must be a positive number of seconds, got {cfg.time_budget}")
    if not (math.isfinite(cfg.pretrain_share) and 0 <= cfg.pretrain_share < 1):
        raise UsageError(f"--pretrain-share must be a fraction in [0, 1) (meta-training needs some of the budget), "
                         f"got {cfg.pretrain_share}")
    if cfg.problem not in ALGORITHMS:
        raise UsageError(f"unknown --problem {cfg.problem!r}: choose one of {', '.join(ALGORITHMS)}")
    if cfg.head_init not in HEAD_INITS:
        raise UsageError(f"unknown --head-init {cfg.head_init!r}: choose one of {', '.join(HEAD_INITS)}")
    if cfg.head_init != "learned" and ALGORITHMS[cfg.problem].update == "interpolate":
        raise UsageError(f"--problem {cfg.problem} moves θ towards each task's adapted weights, which needs a learned "
                         f"head: add --head-init learned (the pipeline's default is prototypes)")
    if cfg.dataset == "folder" and cfg.data_root is None:
        raise UsageError("--dataset folder needs --data-root DIR holding train/, val/ and test/ (one folder per class)")
    if cfg.pretrain_rotations and not DATASETS[cfg.dataset].rotations:
        raise UsageError(f"--pretrain-rotations applies to data sets whose episodes rotate classes (omniglot), not "
                         f"{cfg.dataset}: drop it")
    if cfg.fine_tune not in ("choose", "none"):
        raise UsageError(f"--fine-tune must be choose or none, not {cfg.fine_tune!r}")
    require_positive_integers({"ways": cfg.ways, "shots": cfg.shots, "queries": cfg.queries,
                               "test-queries": cfg.test_queries, "val-tasks": cfg.val_tasks,
                               "fine-tune-tasks": cfg.fine_tune_tasks, "test-tasks": cfg.test_tasks})
    if not (math.isfinite(cfg.meta_lr) and cfg.meta_lr > 0):
        raise UsageError(f"--meta-lr must be a positive number, got {cfg.meta_lr}")
    validate_pretraining(BodyPretrainConfig(arch=cfg.arch, dataset=cfg.dataset, image_size=cfg.image_size,
                                            channels=cfg.channels, lr=cfg.pretrain_lr,
                                            batch_size=cfg.pretrain_batch_size, ways=cfg.ways, shots=cfg.shots,
                                            seed=cfg.seed, device=cfg.device))
    require_seed(cfg.seed)
    require_device(cfg.device)
    require_output(cfg.out, kind="folder")
    if cfg.out and Path(cfg.out).is_dir() and any(Path(cfg.out).iterdir()):
        raise UsageError(f"--out {cfg.out} is not empty: choose a new folder (a pipeline is not resumed)")
    meta_config(cfg, None, 1.0, Path("unused"))  # the meta-training stage's own checks


def meta_config(cfg: PipelineConfig, pretrained: Optional[str], budget: float, out: Path):
    """The meta-training stage as an ordinary run's resolved config, validated."""
    from .run_config import RunConfig, resolve_config, validate_config as validate_run

    run = RunConfig(problem=cfg.problem, dataset=cfg.dataset, data_root=cfg.data_root, download=cfg.download,
                    ways=cfg.ways, shots=cfg.shots, queries=cfg.queries, test_queries=cfg.test_queries, arch=cfg.arch, image_size=cfg.image_size,
                    channels=cfg.channels if cfg.dataset == "folder" else None, pretrained=pretrained,
                    head_init=cfg.head_init, meta_lr=cfg.meta_lr, iterations=10 ** 7, time_budget=budget,
                    val_tasks=cfg.val_tasks, test_tasks=cfg.test_tasks, seed=cfg.seed, device=cfg.device,
                    out=str(out), progress=cfg.progress)
    validate_run(run)
    return resolve_config(run)


class Deadline:
    """A ``MetaLearner.fit`` callback that stops the fit in time for its last validation to
    end by a wall-clock deadline (its ``Budget`` reserves as long as the latest validation
    took), and records each validation as ``(seconds since the pipeline's start, score)``."""

    def __init__(self, start: float, deadline: float):
        self.budget = Budget(deadline - start, start)
        self.curve: list[tuple[float, float]] = []
        self.last: Optional[float] = None
        self.step_seconds = 0.0

    def __call__(self, info) -> bool:
        now = time.perf_counter()
        spent = None if self.last is None else now - self.last
        self.last = now
        if info.val_score is not None:
            self.curve.append((round(now - self.budget.start, 1), info.val_score))
            if spent is not None:  # this step's time with its validation, less an ordinary step's
                self.budget.reserve = max(0.0, spent - self.step_seconds)
        elif spent is not None:
            self.step_seconds = spent if not self.step_seconds else 0.8 * self.step_seconds + 0.2 * spent
        return self.budget.over(spent=now - self.budget.start)


def run_pipeline(cfg: PipelineConfig) -> dict:
    """Pretrain the body, meta-train from it and choose test-time fine-tuning, within one
    wall-clock budget, testing every stage on the same meta-test tasks.

    Writes ``pretrain/body.pt``, ``meta/`` (a run folder whose ``best.pt`` loads with
    ``load``), ``pipeline.json``, ``report.md`` and
    ``accuracy_vs_time.png`` to ``cfg.out``. A pipeline is not resumed; one that stops before
    writing anything (unreadable data, say) leaves no folder.

    Args:
        cfg: The settings.

    Returns:
        The report, also written to ``pipeline.json``, with ``stages`` (one record per stage,
        with ``stage``, ``how``, ``val``, ``test`` as an interval, ``trained_s``), ``curves``,
        ``trained_seconds``, ``wall_seconds``, ``run`` and ``plot``.

    Raises:
        ValueError: One line for a setting that cannot run (checked before any data is read),
            a used output folder, missing or unreadable data.

    Examples:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> from bilevel_anil import PipelineConfig, run_pipeline
        >>> root, out = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> for split in ("train", "val", "test"):  # a tiny data set of your own: 3 classes per split
        ...     for c in range(3):
        ...         os.makedirs(f"{root}/{split}/class{c}")
        ...         for i in range(6):
        ...             Image.new("RGB", (20, 20), (80 * c, 10 * i, 0)).save(f"{root}/{split}/class{c}/{i}.png")
        >>> cfg = PipelineConfig(dataset="folder", data_root=root, ways=2, shots=1, queries=2, test_queries=2,
        ...                      image_size=16, time_budget=2, pretrain_batch_size=8, val_tasks=4,
        ...                      fine_tune_tasks=2, test_tasks=4, out=f"{out}/pipeline", progress=False)
        >>> report = run_pipeline(cfg)  # doctest: +ELLIPSIS
        pipeline: ...
        >>> [row["stage"] for row in report["stages"]]
        ['pretraining only', '+ meta-training', '+ fine-tuning']
    """
    out = Path(cfg.out) if cfg.out else \
        Path("runs") / f"pipeline-{cfg.dataset}-{cfg.ways}w{cfg.shots}s-{time.strftime('%Y%m%d-%H%M%S')}"
    existed = out.exists()
    try:
        return _run_pipeline(cfg, out)
    except BaseException:
        if not existed and out.is_dir() and not any(p.is_file() for p in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run_pipeline(cfg: PipelineConfig, out: Path) -> dict:
    from ..core.evaluation import Interval
    from ..training.allocator import keep_freed_memory
    from .experiment import train_and_test
    from .pretrain_body import BodyPretrainConfig, pretrain_body
    from .suites import build_suite

    keep_freed_memory()
    start, started_at = time.perf_counter(), time.time()

    def clock() -> float:
        return round(time.perf_counter() - start, 1)

    out.mkdir(parents=True, exist_ok=True)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"pipeline: {cfg.dataset} {cfg.ways}-way {cfg.shots}-shot, {cfg.arch}, {cfg.time_budget:g} s of training "
          f"({100 * cfg.pretrain_share:g}% pretraining, then {cfg.problem} with head init {cfg.head_init}); fine-tuning: "
          f"{cfg.fine_tune}; output {out}", flush=True)
    stages, curves = [], {}
    body_path, record = None, None
    test_queries = meta_config(cfg, None, 1.0, out / "meta").test_queries  # the data set's default when None
    if cfg.pretrain_share > 0:
        body_path = out / "pretrain" / "body.pt"
        record = pretrain_body(BodyPretrainConfig(
            arch=cfg.arch, dataset=cfg.dataset, data_root=cfg.data_root, download=cfg.download,
            image_size=cfg.image_size, channels=cfg.channels, time_budget=cfg.pretrain_share * cfg.time_budget,
            lr=cfg.pretrain_lr, batch_size=cfg.pretrain_batch_size, rotations=cfg.pretrain_rotations,
            ways=cfg.ways, shots=cfg.shots, test_queries=test_queries, val_tasks=cfg.val_tasks, seed=cfg.seed,
            device=device, out=str(body_path), progress=cfg.progress), batch_flag="--pretrain-batch-size")
        curves["pretraining (nearest centroid)"] = [(h["seconds"], h["val_accuracy"]) for h in record["history"]]
    pretrained_at = clock()
    deadline = Deadline(start, start + cfg.time_budget)
    run_cfg = meta_config(cfg, str(body_path) if body_path else None, max(1.0, cfg.time_budget - pretrained_at),
                          out / "meta")
    report_run = train_and_test(run_cfg, callbacks=[deadline])
    # training ended when the last checkpoint was written (after the last validation); train_and_test's
    # test came after it
    trained_at = round((out / "meta" / "last.pt").stat().st_mtime - started_at, 1)
    # the tests come after the budget: they are extra, and reported
    suite = build_suite(run_cfg)  # the validation and test tasks every stage is scored on
    (test_label, test_tasks), = suite.test_sets.items()
    if record is not None:
        stages.append(_pretraining_stage(cfg, suite, run_cfg.image_size, body_path, record, device, pretrained_at))
    curves[f"+ meta-training ({run_cfg.problem})"] = deadline.curve
    meta_test = Interval(**report_run["test"][test_label][str(run_cfg.test_inner_steps)])
    stages.append({"stage": "+ meta-training", "how": f"{run_cfg.problem}, head init {cfg.head_init}, "
                   f"{report_run['steps_done']} outer steps, {run_cfg.test_inner_steps} test step(s) at lr "
                   f"{run_cfg.inner_lr}", "val": report_run["best_val"], "test": asdict(meta_test),
                   "trained_s": trained_at})
    if cfg.fine_tune == "choose":
        stages.append(_fine_tuning_stage(cfg, suite, out / "meta" / "best.pt", device, trained_at))
    report = {"config": asdict(cfg), "stages": stages, "curves": {k: [list(p) for p in v] for k, v in curves.items()},
              "test_tasks": f"{cfg.test_tasks} tasks, {test_label}", "trained_seconds": trained_at,
              "wall_seconds": clock(), "run": str(out / "meta")}
    report["plot"] = str(plot_accuracy_vs_time(report, out / "accuracy_vs_time.png"))
    (out / "pipeline.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(format_report(report))
    print(format_report(report), flush=True)
    return report


def _pretraining_stage(cfg: PipelineConfig, suite, image_size: int, body_path: Path, record: dict, device: str,
                       trained_s: float) -> dict:
    """The pretrained body alone, as the nearest-centroid classifier chosen on validation."""
    from ..models import image_model
    from ..training.pretrained import load_pretrained
    from ..training.schema import read_body
    from .nearest_centroid import CentroidRule, centroid_accuracy

    (test_tasks,) = suite.test_sets.values()
    model = image_model(cfg.arch, cfg.ways, in_channels=suite.model.arch.get("in_channels", 1),
                        image_size=image_size).to(device)
    load_pretrained(model, str(body_path))
    saved = read_body(body_path)
    rule = CentroidRule.parse(saved.rule)
    test = centroid_accuracy(model, test_tasks, rule, saved.centre.to(device))
    print(f"pipeline: pretraining only: meta-test {test.percent()} (nearest centroid, {rule.name})", flush=True)
    return {"stage": "pretraining only", "how": f"nearest centroid ({rule.name}), best of "
            f"{len(record['history'])} epoch(s) at epoch {record['epoch']}", "val": record["val_accuracy"],
            "test": asdict(test), "trained_s": trained_s}


def _fine_tuning_stage(cfg: PipelineConfig, suite, checkpoint: Path, device: str, trained_s: float) -> dict:
    """Test-time fine-tuning of the meta-trained learner, its option chosen on validation tasks."""
    from ..api.meta_learner import MetaLearner
    from .fine_tune import choose_fine_tune, score_fine_tunes

    (test_tasks,) = suite.test_sets.values()
    meta = MetaLearner.load(checkpoint, device=device)
    choosing = suite.val_set.select(slice(0, cfg.fine_tune_tasks))
    chosen, scores = choose_fine_tune(meta, choosing, seed=cfg.seed)  # its default grid, from the run's inner loop
    print(f"pipeline: fine-tuning on {choosing.tasks} validation tasks: "
          + "; ".join(f"{o.name} {100 * v.mean:.2f}%" for o, v in scores.items()), flush=True)
    test = score_fine_tunes(meta.test_learner, meta.learner.meta_params(), test_tasks, [chosen], seed=cfg.seed)[chosen]
    return {"stage": "+ fine-tuning", "how": f"{chosen.name} (chosen on {choosing.tasks} validation tasks)",
            "val": scores[chosen].mean, "test": asdict(test), "trained_s": trained_s,
            "options": {o.name: v.mean for o, v in scores.items()}}


def format_report(report: dict) -> str:
    """The stage table as Markdown."""
    cfg = report["config"]
    lines = [f"# Pipeline: {cfg['dataset']} {cfg['ways']}-way {cfg['shots']}-shot, {cfg['arch']}, seed {cfg['seed']}",
             "", f"Budget {cfg['time_budget']:g} s of training ({100 * cfg['pretrain_share']:g}% pretraining); "
             f"training ended at {report['trained_seconds']} s, everything at {report['wall_seconds']} s wall. "
             f"Meta-test: {report['test_tasks']}.", "",
             "| stage | how | validation | meta-test (95% interval) | trained by (s) |", "|---|---|---|---|---|"]
    for row in report["stages"]:
        test = row["test"]
        lines.append(f"| {row['stage']} | {row['how']} | {100 * row['val']:.2f}% | {100 * test['mean']:.2f}% ± "
                     f"{100 * test['ci95']:.2f}% | {row['trained_s']} |")
    return "\n".join(lines) + f"\n\nPlot: {report['plot']}\n"


def plot_accuracy_vs_time(report: dict, path: Path) -> Path:
    """Validation accuracy against wall seconds since the pipeline's start, one curve per
    stage, with each stage's meta-test accuracy as a horizontal line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in report["curves"].items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], marker="o", ms=3, label=f"{label}: validation")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(report["stages"]):
        ax.axhline(100 * row["test"]["mean"], ls="--", lw=1, color=colours[(i + 3) % len(colours)],
                   label=f"{row['stage']}: meta-test {100 * row['test']['mean']:.2f}%")
    ax.axvline(report["config"]["time_budget"], color="grey", lw=0.8, ls=":", label="budget")
    cfg = report["config"]
    ax.set_xlabel("wall seconds since the start (pretraining included)")
    ax.set_ylabel(f"{cfg['ways']}-way {cfg['shots']}-shot accuracy (%)")
    ax.set_title(f"{cfg['dataset']}, {cfg['arch']}, seed {cfg['seed']}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
