"""Episodes: batches of few-shot tasks split into support and query sets."""
from __future__ import annotations

import contextlib
import functools
import io
import random
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
from torch import Tensor

from ..errors import DataError
from .omniglot import ClassImages

with contextlib.redirect_stderr(io.StringIO()):  # gym, imported by learn2learn, prints a banner
    import learn2learn as l2l


@dataclass
class TaskSet:
    """Inputs ``x`` ``[B, n, ...]`` and targets ``y`` ``[B, n, ...]`` of B tasks."""

    x: Tensor
    y: Tensor


@dataclass
class EpisodeBatch:
    """B tasks, each with a support set (to adapt on) and a query set (to score)."""

    support: TaskSet
    query: TaskSet

    @property
    def tasks(self) -> int:
        return self.support.x.shape[0]

    def to(self, device: torch.device | str) -> "EpisodeBatch":
        return EpisodeBatch(TaskSet(self.support.x.to(device), self.support.y.to(device)),
                            TaskSet(self.query.x.to(device), self.query.y.to(device)))

    def select(self, tasks: slice) -> "EpisodeBatch":
        """The tasks in the range ``tasks``."""
        return EpisodeBatch(TaskSet(self.support.x[tasks], self.support.y[tasks]),
                            TaskSet(self.query.x[tasks], self.query.y[tasks]))

    def chunks(self, size: int) -> Iterator["EpisodeBatch"]:
        """Consecutive groups of at most ``size`` tasks."""
        for i in range(0, self.tasks, size):
            yield self.select(slice(i, i + size))

    @staticmethod
    def cat(batches: list["EpisodeBatch"]) -> "EpisodeBatch":
        return EpisodeBatch(TaskSet(torch.cat([b.support.x for b in batches]), torch.cat([b.support.y for b in batches])),
                            TaskSet(torch.cat([b.query.x for b in batches]), torch.cat([b.query.y for b in batches])))


class TaskSampler(Protocol):
    """Anything that draws a batch of tasks (the Env's data source)."""

    def sample(self, tasks: int) -> EpisodeBatch: ...


class RepeatBatch:
    """A sampler that always serves the same episodes (one fixed meta-batch, e.g. to compare
    meta-gradients or to benchmark an outer step)."""

    def __init__(self, batch: EpisodeBatch):
        self.batch = batch

    def sample(self, tasks: int) -> EpisodeBatch:
        if tasks != self.batch.tasks:
            raise ValueError(f"this fixed batch holds {self.batch.tasks} tasks, {tasks} were asked for")
        return self.batch


def _rotate(sample: tuple[Tensor, int], turns: int) -> tuple[Tensor, int]:
    return torch.rot90(sample[0], turns, dims=(-2, -1)), sample[1]


class RotateClasses:
    """learn2learn task transform: rotate all images of a class by one random multiple of 90°.

    Rotated characters act as new classes (Santoro et al., 2016). Unlike learn2learn's
    ``RandomClassRotation``, each class keeps its own angle and the rotation is exact.
    """

    def __init__(self, dataset: l2l.data.MetaDataset, turns: tuple[int, ...] = (0, 1, 2, 3)):
        self.dataset = dataset
        self.turns = turns

    def __call__(self, task_description: list) -> list:
        chosen: dict[int, int] = {}
        for item in task_description:
            label = self.dataset.indices_to_labels[item.index]
            if label not in chosen:
                chosen[label] = random.choice(self.turns)
            if chosen[label]:
                item.transforms.append(functools.partial(_rotate, turns=chosen[label]))
        return task_description


class ClassificationTasks:
    """N-way K-shot tasks with Q queries per class, built with learn2learn's TaskDataset.

    Labels are remapped to 0..N-1 per task. Randomness comes from Python's ``random``
    module (as in learn2learn's transforms), so ``random.seed`` makes sampling reproducible.
    """

    def __init__(self, data: ClassImages, ways: int, shots: int, queries: int,
                 rotate: bool = False, split_name: str = "split"):
        if ways > len(data.classes):
            raise DataError(f"--ways {ways} is larger than the {len(data.classes)} classes of the "
                            f"{split_name} split: lower --ways")
        per_class = data.images_per_class()
        if shots + queries > per_class:
            raise DataError(f"--shots {shots} plus {queries} queries need {shots + queries} images per class, "
                            f"but class {data.smallest_class()} of the {split_name} split has {per_class}: lower "
                            "--shots or the queries, or remove that class")
        self.ways, self.shots, self.queries = ways, shots, queries
        self.to_input = data.to_input
        labels = data.labels.tolist()
        by_label: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        dataset = l2l.data.MetaDataset(torch.utils.data.TensorDataset(data.images, data.labels),
                                       labels_to_indices=by_label)
        transforms = [
            l2l.data.transforms.NWays(dataset, ways),
            l2l.data.transforms.KShots(dataset, shots + queries),
            l2l.data.transforms.LoadData(dataset),
        ]
        if rotate:
            transforms.append(RotateClasses(dataset))
        transforms += [l2l.data.transforms.RemapLabels(dataset), l2l.data.transforms.ConsecutiveLabels(dataset)]
        self.taskset = l2l.data.TaskDataset(dataset, transforms, num_tasks=-1)

    def _split(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        order = torch.argsort(y, stable=True)
        x = x[order].view(self.ways, self.shots + self.queries, *x.shape[1:])
        labels = torch.arange(self.ways).unsqueeze(1)
        return (x[:, :self.shots].flatten(0, 1), labels.expand(-1, self.shots).flatten(),
                x[:, self.shots:].flatten(0, 1), labels.expand(-1, self.queries).flatten())

    def sample(self, tasks: int) -> EpisodeBatch:
        parts = [self._split(*self.taskset.sample()) for _ in range(tasks)]
        sx, sy, qx, qy = (torch.stack(p) for p in zip(*parts))
        return EpisodeBatch(TaskSet(self.to_input(sx), sy), TaskSet(self.to_input(qx), qy))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from Python's and torch's generators with ``seed``, leaving the outer state as it was."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def fixed_tasks(sampler: TaskSampler, tasks: int, seed: int, chunk: int = 100) -> EpisodeBatch:
    """A reproducible set of tasks (for validation and testing), independent of training draws."""
    with seeded(seed):
        return EpisodeBatch.cat([sampler.sample(min(chunk, tasks - i)) for i in range(0, tasks, chunk)])
