"""What a run trains and is tested on: network, loss, task samplers and fixed held-out tasks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import nn

from .data.episodes import TaskBatch, TaskSampler, fixed_tasks
from .losses import LOSSES, TaskLoss


@dataclass
class TaskSuite:
    """One benchmark, ready for the Env (``train``) and for evaluation (fixed task sets)."""

    model: nn.Module
    loss: TaskLoss
    train: TaskSampler
    val_set: TaskBatch
    test_sets: dict[str, TaskBatch]  # label (e.g. "K=5") -> tasks
    test_steps: list[int]  # inner steps after which the test score is reported
    description: str  # where the test tasks come from
    plot_samplers: Optional[dict[str, TaskSampler]] = None  # sine: samplers for the task plot
    normalization: Optional[dict] = None  # {"mean", "std"} computed from the data (stored in checkpoints)

    @property
    def metric(self) -> str:
        return self.loss.metric

    @property
    def higher_is_better(self) -> bool:
        return self.loss.higher_is_better


def data_root(cfg) -> Path:
    """``--data-root``, or ``./data`` (created, for the download) when it is not given."""
    if cfg.data_root is not None:
        return Path(cfg.data_root)
    root = Path("data")
    root.mkdir(exist_ok=True)
    return root


def classification_suite(cfg, splits: dict, model: nn.Module, test_source: str, rotate: bool) -> TaskSuite:
    """N-way K-shot tasks from the ``train``/``val``/``test`` splits of a data set (classes
    rotated in meta-training when ``rotate``); ``test_source`` says where test tasks come from."""
    from .data import ClassificationTasks

    train = ClassificationTasks(splits["train"], cfg.ways, cfg.train_shots or cfg.shots, cfg.queries, rotate,
                                "meta-train")
    val = ClassificationTasks(splits["val"], cfg.ways, cfg.shots, cfg.test_queries, False, "meta-validation")
    test = ClassificationTasks(splits["test"], cfg.ways, cfg.shots, cfg.test_queries, False, "meta-test")
    label = f"{cfg.ways}-way {cfg.shots}-shot"
    return TaskSuite(
        model=model, loss=LOSSES["cross_entropy"], train=train,
        val_set=fixed_tasks(val, cfg.val_tasks, seed=cfg.seed + 1),
        test_sets={label: fixed_tasks(test, cfg.test_tasks, seed=cfg.seed + 2)},
        test_steps=sorted({0, cfg.test_inner_steps}),
        description=f"{cfg.test_tasks} tasks from {test_source}, {label}, {cfg.test_queries} queries/class")


def build_suite(cfg) -> TaskSuite:
    """The task suite of ``cfg.dataset`` (a resolved ``bilevel_anil.config.RunConfig``),
    built by the data set's spec (``bilevel_anil.data.registry``)."""
    from .data.registry import dataset_spec

    return dataset_spec(cfg.dataset).build_suite(cfg)
