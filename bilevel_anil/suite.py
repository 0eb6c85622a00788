"""What a run trains and is tested on: network, loss, task samplers and fixed held-out tasks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import nn

from .data.episodes import TaskBatch, TaskSampler, fixed_tasks
from .losses import LOSSES, TaskLoss

SINE_TEST_SHOTS = (5, 10)  # the MAML paper's K
SINE_TEST_STEPS = (0, 1, 5, 10)  # its evaluation curve


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

    @property
    def metric(self) -> str:
        return self.loss.metric

    @property
    def higher_is_better(self) -> bool:
        return self.loss.higher_is_better


def _data_root(cfg) -> Path:
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


def omniglot_suite(cfg) -> TaskSuite:
    """N-way K-shot Omniglot: meta-train/validation on disjoint background characters,
    meta-test on the evaluation alphabets."""
    from .data import load_omniglot
    from .models import image_model

    splits = load_omniglot(_data_root(cfg), download=cfg.download, image_size=cfg.image_size)
    model = image_model(cfg.arch, cfg.ways, image_size=cfg.image_size, bn=cfg.bn)
    return classification_suite(cfg, splits, model, "the Omniglot evaluation alphabets", cfg.rotate)


def natural_suite(cfg) -> TaskSuite:
    """mini-ImageNet, tiered-ImageNet, CIFAR-FS or FC100 through learn2learn's dataset classes:
    their standard meta-train / meta-validation / meta-test class splits, RGB inputs, no
    rotated classes."""
    from .data.natural import NATURAL_DATASETS, load_natural
    from .models import image_model

    spec = NATURAL_DATASETS[cfg.dataset]
    splits = load_natural(cfg.dataset, _data_root(cfg), download=cfg.download)
    model = image_model(cfg.arch, cfg.ways, in_channels=3, image_size=spec.image_size, bn=cfg.bn)
    names = {"train": "meta-train", "val": "meta-validation", "test": "meta-test"}
    counts = ", ".join(f"{len(splits[k].classes)} {names[k]}" for k in names)
    return classification_suite(cfg, splits, model, f"the {spec.title} meta-test classes ({counts} classes)",
                                rotate=False)


def sine_suite(cfg) -> TaskSuite:
    """Sine-wave regression with the MLP 1-40-40-1; tested at K=5 and K=10 after 0, 1, 5 and
    10 inner steps (the MAML paper's protocol) on tasks never seen in training."""
    from .data.sine import SineTasks
    from .models import MLP

    tests = {f"K={k}": SineTasks(k, cfg.test_queries) for k in SINE_TEST_SHOTS}
    return TaskSuite(
        model=MLP(), loss=LOSSES["mse"], train=SineTasks(cfg.train_shots or cfg.shots, cfg.queries),
        val_set=fixed_tasks(SineTasks(cfg.shots, cfg.test_queries), cfg.val_tasks, seed=cfg.seed + 1),
        test_sets={label: fixed_tasks(s, cfg.test_tasks, seed=cfg.seed + 2 + i)
                   for i, (label, s) in enumerate(tests.items())},
        test_steps=sorted({*SINE_TEST_STEPS, cfg.test_inner_steps}),
        description=f"{cfg.test_tasks} new sine tasks per K, {cfg.test_queries} query points each",
        plot_samplers=tests)


def build_suite(cfg) -> TaskSuite:
    """The task suite of ``cfg.dataset`` (a resolved :class:`bilevel_anil.config.RunConfig`)."""
    return {"omniglot": omniglot_suite, "sine": sine_suite}.get(cfg.dataset, natural_suite)(cfg)
