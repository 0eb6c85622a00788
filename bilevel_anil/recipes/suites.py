"""What a run trains and is tested on: network, loss, task samplers and fixed held-out tasks.

The one place where a data set (``bilevel_anil.data``) meets a network
(``bilevel_anil.models``): the data layer describes data only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from ..core.losses import LOSSES, TaskLoss
from ..core.tasks import TaskBatch, TaskSampler, fixed_tasks
from ..data.episodes import ClassificationTasks
from ..data.registry import dataset_spec
from ..data.sine import SINE_TEST_SHOTS, SINE_TEST_STEPS, SineTasks
from ..models import MLP, image_model


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


def classification_suite(cfg) -> TaskSuite:
    """N-way K-shot tasks from the ``train``/``val``/``test`` splits of ``cfg.dataset`` (classes
    rotated in meta-training where the data set has rotations and ``cfg.rotate``), with a new
    image network of ``cfg.ways`` outputs."""
    spec = dataset_spec(cfg.dataset)
    splits = spec.load_splits(cfg)
    model = image_model(cfg.arch, cfg.ways, in_channels=spec.input_channels(cfg), image_size=spec.size(cfg), bn=cfg.bn)
    rotate = spec.rotations and cfg.rotate
    train = ClassificationTasks(splits["train"], cfg.ways, cfg.train_shots or cfg.shots, cfg.queries, rotate,
                                "meta-train")
    val = ClassificationTasks(splits["val"], cfg.ways, cfg.shots, cfg.test_queries, False, "meta-validation")
    test = ClassificationTasks(splits["test"], cfg.ways, cfg.shots, cfg.test_queries, False, "meta-test")
    label = f"{cfg.ways}-way {cfg.shots}-shot"
    normalization = None
    if spec.stores_normalization:
        normalization = {"mean": list(splits["train"].mean), "std": list(splits["train"].std)}
    return TaskSuite(
        model=model, loss=LOSSES["cross_entropy"], train=train,
        val_set=fixed_tasks(val, cfg.val_tasks, seed=cfg.seed + 1),
        test_sets={label: fixed_tasks(test, cfg.test_tasks, seed=cfg.seed + 2)},
        test_steps=sorted({0, cfg.test_inner_steps}),
        description=f"{cfg.test_tasks} tasks from {spec.test_source(cfg, splits)}, {label}, "
                    f"{cfg.test_queries} queries/class",
        normalization=normalization)


def sine_suite(cfg) -> TaskSuite:
    """Sine-wave regression with the MLP 1-40-40-1; tested at K=5 and K=10 after 0, 1, 5 and
    10 inner steps (the MAML paper's protocol) on tasks never seen in training."""
    tests = {f"K={k}": SineTasks(k, cfg.test_queries) for k in SINE_TEST_SHOTS}
    return TaskSuite(
        model=MLP(), loss=LOSSES["mse"], train=SineTasks(cfg.train_shots or cfg.shots, cfg.queries),
        val_set=fixed_tasks(SineTasks(cfg.shots, cfg.test_queries), cfg.val_tasks, seed=cfg.seed + 1),
        test_sets={label: fixed_tasks(s, cfg.test_tasks, seed=cfg.seed + 2 + i)
                   for i, (label, s) in enumerate(tests.items())},
        test_steps=sorted({*SINE_TEST_STEPS, cfg.test_inner_steps}),
        description=f"{cfg.test_tasks} new sine tasks per K, {cfg.test_queries} query points each",
        plot_samplers=tests)


# the regression families, each with its own network and protocol; every image data set is a
# classification suite
REGRESSION_SUITES: dict[str, Callable[..., TaskSuite]] = {"sine": sine_suite}


def build_suite(cfg) -> TaskSuite:
    """The task suite of ``cfg.dataset`` (a resolved ``bilevel_anil.recipes.run_config.RunConfig``)."""
    spec = dataset_spec(cfg.dataset)
    return classification_suite(cfg) if spec.images else REGRESSION_SUITES[spec.name](cfg)
