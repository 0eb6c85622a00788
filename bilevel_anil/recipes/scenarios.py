"""``run.py scenarios``: the four ANIL training scenarios of the project's ANIL notes, plus the
ablation of S4 without trainable BatchNorm, at equal settings and time budget each.

S1: anil (second order), Conv4 from scratch; S2: foanil, Conv4 from scratch; S3: foanil on a
pretrained ResNet-18 whose body keeps training; S4: the same with its convolutions frozen and
its BatchNorm affine parameters meta-trained; S4-noBN: the same with the whole body frozen.
Each scenario is an ordinary run (``run.py --problem ... --arch ... --train-body ...``) in a
fresh process, so its peak memory is its own. Output: a printed table, ``scenarios.csv``,
``scenarios.json`` and ``scenarios.png`` (training-loss curves and test accuracies).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError, require_output, require_positive_integers
from ..settings import setting, shared


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    problem: str
    arch: str
    pretrained: bool
    train_body: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("S1", "ANIL, second order, Conv4 from scratch", "anil", "conv4", False, "all"),
    Scenario("S2", "ANIL, first order, Conv4 from scratch", "foanil", "conv4", False, "all"),
    Scenario("S3", "pretrained ResNet-18, body meta-trained", "foanil", "resnet18", True, "all"),
    Scenario("S4", "pretrained ResNet-18, convolutions frozen, BatchNorm meta-trained", "foanil", "resnet18", True,
             "bn"),
    Scenario("S4-noBN", "S4 without trainable BatchNorm (head only)", "foanil", "resnet18", True, "none"),
)
PRETRAINED_ARCH = "resnet18"


@dataclass
class ScenarioConfig:
    """Settings shared by every scenario (each field is its flag). Defaults are the notes'
    configuration (5-way 1-shot, 5 queries per class, 5 inner steps at lr 0.01, meta-batch 16, Adam 1e-3)."""

    data_root: Optional[str] = shared("data_root")
    download: bool = shared("download")
    time_budget: float = setting(120.0, "seconds of outer steps per scenario", metavar="SECONDS")
    pretrained: str = setting("auto", "body for S3/S4: imagenet, a weights file, or auto (ImageNet weights when they "
                              "can be had, else run.py pretrain-body first)", metavar="SOURCE")
    pretrain_epochs: int = setting(5, "epochs of pretrain-body when auto falls back to it")
    ways: int = setting(5, "classes per task")
    shots: int = setting(1, "support examples per class")
    queries: int = setting(5, "query examples per class in meta-training")
    meta_batch: int = setting(16, "tasks per outer step")
    inner_steps: int = setting(5, "steps of the inner loop")
    inner_lr: float = setting(0.01, "inner-loop step size")
    meta_lr: float = setting(0.001, "Adam learning rate of the meta-parameters")
    val_every: int = setting(50, "validate every this many outer steps")
    val_tasks: int = setting(100, "held-out validation tasks")
    test_tasks: int = setting(600, "meta-test tasks per scenario")
    seed: int = shared("seed")
    device: Optional[str] = shared("device")
    out: Optional[str] = shared("out")
    only: list[str] = setting(help="run only these of {scenarios}", factory=list, parse=lambda s: s.split(","),
                              metavar="S1,S4,...")
    progress: Optional[bool] = shared("progress")


def _in_child(fn, *args):
    """Run ``fn(*args)`` in a fresh process (its peak memory and threads are its own)."""
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def _run(run_config) -> dict:
    from .run_config import resolve_config
    from .experiment import train_and_test

    return train_and_test(resolve_config(run_config))


def _pretrain(body_config) -> dict:
    from .pretrain_body import pretrain_body

    return pretrain_body(body_config)


def resolve_pretrained(cfg: ScenarioConfig, out: Path) -> tuple[str, str]:
    """The body source for S3/S4 and a sentence saying why it is that one. ``auto``: torchvision's
    ImageNet weights if they are cached or can be downloaded, else ``run.py pretrain-body``."""
    if cfg.pretrained != "auto":
        return cfg.pretrained, "as given by --pretrained"
    from ..training.pretrained import imagenet_state_dict

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            imagenet_state_dict(PRETRAINED_ARCH)
        return "imagenet", "torchvision's ImageNet weights were available"
    except UsageError as exc:
        reason = str(exc)
    from .pretrain_body import BodyPretrainConfig

    path = out / "pretrained-body.pt"
    print(f"scenarios: ImageNet weights unavailable ({reason}); pretraining the body instead "
          f"(run.py pretrain-body, {cfg.pretrain_epochs} epochs)", flush=True)
    record = _in_child(_pretrain, BodyPretrainConfig(
        # the scenarios' measured setting: no rotated classes, a constant learning rate
        arch=PRETRAINED_ARCH, data_root=cfg.data_root, download=cfg.download, epochs=cfg.pretrain_epochs,
        rotations=False, schedule="constant",
        ways=cfg.ways, shots=cfg.shots, seed=cfg.seed, device=cfg.device, out=str(path), progress=cfg.progress))
    return str(path), (f"ImageNet weights unavailable offline; run.py pretrain-body ({cfg.pretrain_epochs} epochs "
                       f"on the meta-training classes, best epoch {record['epoch']}, nearest-centroid validation "
                       f"({record['rule']}) {100 * record['val_accuracy']:.1f}%)")


def run_config(cfg: ScenarioConfig, scenario: Scenario, pretrained: Optional[str], out: Path):
    """The ordinary run that is ``scenario``."""
    from .run_config import RunConfig

    return RunConfig(problem=scenario.problem, dataset="omniglot", data_root=cfg.data_root, download=cfg.download,
                     ways=cfg.ways, shots=cfg.shots, queries=cfg.queries, inner_steps=cfg.inner_steps,
                     inner_lr=cfg.inner_lr, meta_lr=cfg.meta_lr, meta_batch=cfg.meta_batch, iterations=10 ** 7,
                     val_every=cfg.val_every, val_tasks=cfg.val_tasks, test_tasks=cfg.test_tasks,
                     time_budget=cfg.time_budget, arch=scenario.arch,
                     pretrained=pretrained if scenario.pretrained else None, train_body=scenario.train_body,
                     seed=cfg.seed, device=cfg.device, out=str(out / scenario.key), progress=cfg.progress)


def losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as fh:
        return [float(row["train_loss"]) for row in csv.DictReader(fh)]


def summary_row(scenario: Scenario, report: dict) -> dict:
    """One table row from a run's ``results.json`` record."""
    test = next(iter(report["test"].values()))
    before, after = test["0"], test[str(report["test_inner_steps"])]
    return {
        "scenario": scenario.key, "title": scenario.title, "problem": scenario.problem, "arch": scenario.arch,
        "train_body": scenario.train_body, "pretrained": report["pretrained"] or "none (random initialisation)",
        "params_total": report["parameters"]["total"], "params_meta_trained": report["parameters"]["meta_trained"],
        "params_batchnorm": report["parameters"]["batchnorm"], "outer_steps": report["steps_done"],
        "steps_per_s": report["steps_per_second"], "train_s": report["train_seconds"],
        "peak_mib": report["peak_train_mib"], "last_train_loss": report["last_train_loss"],
        "best_val": report["best_val"], "test_before": before["mean"], "test_before_ci95": before["ci95"],
        "test_after": after["mean"], "test_after_ci95": after["ci95"],
    }


def format_table(rows: list[dict]) -> str:
    head = ("scenario", "params", "meta-trained", "BN", "steps", "steps/s", "train s", "peak MiB", "last loss",
            "best val", "test before", "test after")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        lines.append(" | ".join([
            r["scenario"], f"{r['params_total']:,}", f"{r['params_meta_trained']:,}", f"{r['params_batchnorm']:,}",
            str(r["outer_steps"]), f"{r['steps_per_s']:.2f}", f"{r['train_s']:.0f}", peak,
            f"{r['last_train_loss']:.3f}", f"{100 * r['best_val']:.1f}%",
            f"{100 * r['test_before']:.1f} ± {100 * r['test_before_ci95']:.1f}%",
            f"{100 * r['test_after']:.1f} ± {100 * r['test_after_ci95']:.1f}%"]))
    return "\n".join("| " + line + " |" for line in lines)


def plot(rows: list[dict], curves: dict[str, list[float]], path: Path, title: str) -> Path:
    """Training-loss curves (moving average over 20 steps) and test-accuracy bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    for key, values in curves.items():
        v = np.asarray(values)
        window = max(1, min(20, len(v) // 5))
        smooth = np.convolve(v, np.ones(window) / window, mode="valid")
        left.plot(np.arange(window, len(v) + 1), smooth, label=key)
    left.set_xlabel("outer step")
    left.set_ylabel("query loss (moving average, up to 20 steps)")
    left.set_title("meta-training loss")
    left.legend()
    x = np.arange(len(rows))
    right.bar(x - 0.2, [100 * r["test_before"] for r in rows], 0.4, yerr=[100 * r["test_before_ci95"] for r in rows],
              label="before adaptation", color="0.7", capsize=3)
    right.bar(x + 0.2, [100 * r["test_after"] for r in rows], 0.4, yerr=[100 * r["test_after_ci95"] for r in rows],
              label="after adaptation", color="C0", capsize=3)
    right.set_xticks(x, [r["scenario"] for r in rows])
    right.set_ylabel("meta-test accuracy (%), 95% interval")
    right.set_ylim(0, 100)
    right.set_title("meta-test accuracy")
    right.legend(loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_scenarios(cfg: ScenarioConfig) -> list[dict]:
    chosen = [s for s in SCENARIOS if not cfg.only or s.key in cfg.only]
    out = Path(cfg.out) if cfg.out else Path("runs") / f"scenarios-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    pretrained, why = resolve_pretrained(cfg, out) if any(s.pretrained for s in chosen) else (None, "")
    settings = (f"Omniglot {cfg.ways}-way {cfg.shots}-shot, {cfg.queries} queries/class, meta-batch "
                f"{cfg.meta_batch}, {cfg.inner_steps} inner steps at lr {cfg.inner_lr}, Adam {cfg.meta_lr}, "
                f"{cfg.time_budget:g} s of outer steps each, seed {cfg.seed}")
    print(f"scenarios: {', '.join(s.key for s in chosen)}; {settings}; output {out}", flush=True)
    rows, curves = [], {}
    for scenario in chosen:
        print(f"\n=== {scenario.key}: {scenario.title} ===", flush=True)
        report = _in_child(_run, run_config(cfg, scenario, pretrained, out))
        rows.append(summary_row(scenario, report))
        curves[scenario.key] = losses(out / scenario.key)
    table = format_table(rows)
    source = f"pretrained body (S3, S4): {pretrained} — {why}" if pretrained else ""
    print(f"\n{settings}\n{source}\n{table}", flush=True)
    (out / "scenarios.md").write_text(f"{settings}\n\n{source}\n\n{table}\n")
    with open(out / "scenarios.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "scenarios.json").write_text(json.dumps({"settings": asdict(cfg), "pretrained": pretrained,
                                                    "pretrained_why": why, "rows": rows}, indent=2))
    plot(rows, curves, out / "scenarios.png", settings)
    print(f"wrote {out / 'scenarios.csv'}, scenarios.json, scenarios.md and scenarios.png", flush=True)
    return rows

def validate(cfg: ScenarioConfig) -> None:
    keys = [s.key for s in SCENARIOS]
    unknown = [k for k in cfg.only if k not in keys]
    if unknown:
        raise UsageError(f"--only: unknown scenario {unknown[0]!r}: choose from {', '.join(keys)}")
    require_positive_integers({"pretrain-epochs": cfg.pretrain_epochs})
    require_output(cfg.out)
    if cfg.pretrained not in ("auto", "imagenet") and not Path(cfg.pretrained).is_file():
        raise UsageError(f"--pretrained {cfg.pretrained}: no such file (give auto, imagenet or a weights file)")
    # every other flag (--time-budget, counts, rates) is checked as the runs will see it
    from .run_config import validate_config

    probe = run_config(cfg, SCENARIOS[3], None if cfg.pretrained == "auto" else cfg.pretrained, Path("."))
    probe.out = None
    validate_config(probe)
