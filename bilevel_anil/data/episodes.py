"""Episodes: batches of few-shot tasks split into support and query sets, and the samplers
that draw them (from class images, from any map-style ``Dataset``, from a function).

A sampler is anything with ``sample(tasks) -> TaskBatch`` (``TaskSampler``). Each
sampler here takes a ``torch.Generator`` (or a seed): then its draws depend on that generator
alone, not on the global random state.
"""
from __future__ import annotations

import contextlib
import functools
import io
import random
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ..errors import DataError, UsageError, first_line
from ..core.tasks import RepeatBatch, TaskBatch, TaskSampler, TaskSet, fixed_tasks, seeded
from .class_images import ClassImages

__all__ = ["ClassificationTasks", "FunctionTasks", "RepeatBatch", "TaskBatch", "TaskSampler", "TaskSet",
           "dataset_tasks", "fixed_tasks", "function_tasks", "seeded"]


def _learn2learn():
    """learn2learn, imported on first use (gym, which it imports, prints a banner)."""
    with contextlib.redirect_stderr(io.StringIO()):
        import learn2learn
    return learn2learn


def _rotate(sample: tuple[Tensor, int], turns: int) -> tuple[Tensor, int]:
    return torch.rot90(sample[0], turns, dims=(-2, -1)), sample[1]


class RotateClasses:
    """learn2learn task transform: rotate all images of a class by one random multiple of 90°.

    Rotated characters act as new classes (Santoro et al., 2016). Unlike learn2learn's
    ``RandomClassRotation``, each class keeps its own angle and the rotation is exact.
    """

    def __init__(self, dataset, turns: tuple[int, ...] = (0, 1, 2, 3)):
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


def _generator(generator: Optional[torch.Generator], seed: Optional[int]) -> Optional[torch.Generator]:
    if generator is not None and seed is not None:
        raise UsageError("give a generator or a seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise UsageError(f"generator must be a torch.Generator, not {type(generator).__name__}")
    return torch.Generator().manual_seed(seed) if seed is not None else generator


def _python_random_from(generator: Optional[torch.Generator]):
    """learn2learn's transforms draw from Python's ``random``: with a generator, the draw runs
    under a seed taken from it (``seeded``, which puts the global states back), so it
    depends on the generator alone."""
    if generator is None:
        return contextlib.nullcontext()
    return seeded(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))


def _dataset_labels(dataset: Any) -> list[int]:
    """Each item's class: ``dataset.targets`` where it has them (torchvision's folders), else
    read item by item."""
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return [int(t) for t in targets]
    labels = []
    for i in range(len(dataset)):
        try:
            item = dataset[i]
            labels.append(int(item[1]))
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise UsageError(f"item {i} of the dataset is not an (input, class) pair with an integer class "
                             f"({first_line(exc, 120)})") from None
    return labels


class ClassificationTasks:
    """N-way K-shot tasks with Q queries per class, built with learn2learn's MetaDataset and
    TaskDataset from class images (``ClassImages``) or any map-style ``Dataset`` of
    ``(input tensor, class)`` pairs.

    Labels are remapped to 0..N-1 per task. With ``generator`` (or ``seed``) the draws depend on
    it alone; without, on Python's global ``random`` (as learn2learn's transforms do), so
    ``random.seed`` makes sampling reproducible. ``transforms``: more learn2learn task
    transforms, applied after the data is loaded (e.g. ``RotateClasses``).
    """

    def __init__(self, data: Union[ClassImages, Any], ways: int, shots: int, queries: int,
                 rotate: bool = False, split_name: str = "split", generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None):
        l2l = _learn2learn()
        for name, value, least in (("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise UsageError(f"{name} must be an integer >= {least}, got {value!r}")
        self.generator = _generator(generator, seed)
        if isinstance(data, ClassImages):
            dataset, labels = torch.utils.data.TensorDataset(data.images, data.labels), data.labels.tolist()
            self.to_input: Callable[[Tensor], Tensor] = data.to_input
        else:
            if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
                raise UsageError(f"expected a map-style Dataset of (input, class) pairs, got {type(data).__name__}")
            dataset, labels = data, _dataset_labels(data)
            self.to_input = lambda x: x
        by_label: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        if isinstance(data, ClassImages):  # its classes include any without images
            n_classes, per_class, name = len(data.classes), data.images_per_class(), \
                data.smallest_class() if data.classes else None
        else:
            name = min(by_label, key=lambda k: len(by_label[k])) if by_label else None
            n_classes, per_class = len(by_label), len(by_label[name]) if by_label else 0
        if ways > n_classes:
            raise DataError(f"⟨ways⟩ {ways} is larger than the {n_classes} classes of the "
                            f"{split_name} split: lower ⟨ways⟩")
        if shots + queries > per_class:
            raise DataError(f"⟨shots⟩ {shots} plus {queries} queries need {shots + queries} images per class, "
                            f"but class {name} of the {split_name} split has {per_class}: lower "
                            "⟨shots⟩ or the queries, or remove that class")
        self.ways, self.shots, self.queries = ways, shots, queries
        meta = l2l.data.MetaDataset(dataset, labels_to_indices=by_label)
        transforms = [
            l2l.data.transforms.NWays(meta, ways),
            l2l.data.transforms.KShots(meta, shots + queries),
            l2l.data.transforms.LoadData(meta),
        ]
        if rotate:
            transforms.append(RotateClasses(meta))
        transforms += [l2l.data.transforms.RemapLabels(meta), l2l.data.transforms.ConsecutiveLabels(meta)]
        self.taskset = l2l.data.TaskDataset(meta, transforms, num_tasks=-1)

    def _split(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        order = torch.argsort(y, stable=True)
        x = x[order].view(self.ways, self.shots + self.queries, *x.shape[1:])
        labels = torch.arange(self.ways).unsqueeze(1)
        return (x[:, :self.shots].flatten(0, 1), labels.expand(-1, self.shots).flatten(),
                x[:, self.shots:].flatten(0, 1), labels.expand(-1, self.queries).flatten())

    def _draw(self) -> tuple:
        try:
            x, y = self.taskset.sample()
        except (TypeError, RuntimeError) as exc:
            raise UsageError(f"the dataset's items cannot be stacked into a task ({first_line(exc, 120)}): each input "
                             "must be a tensor of one shape (give the dataset a transform such as "
                             "torchvision.transforms.ToTensor() and a fixed size)") from None
        return self._split(x, torch.as_tensor(y))

    def sample(self, tasks: int) -> TaskBatch:
        with _python_random_from(self.generator):
            parts = [self._draw() for _ in range(tasks)]
        sx, sy, qx, qy = (torch.stack(p) for p in zip(*parts))
        return TaskBatch(TaskSet(self.to_input(sx), sy), TaskSet(self.to_input(qx), qy))


def dataset_tasks(dataset: Any, ways: int, shots: int, queries: int, *, generator: Optional[torch.Generator] = None,
                  seed: Optional[int] = None) -> ClassificationTasks:
    """N-way K-shot tasks from any map-style ``torch.utils.data.Dataset`` of ``(input tensor,
    class)`` pairs, through learn2learn's ``MetaDataset``/``TaskDataset``.

    Each task draws N classes and K + Q examples of each; labels are 0..N-1 per task. The draws
    depend on the generator (or seed) alone.

    Args:
        dataset: A map-style dataset of ``(tensor, int)`` pairs.
        ways: Classes per task (N).
        shots: Support examples per class (K).
        queries: Query examples per class (Q).
        generator: The ``torch.Generator`` the tasks are drawn with.
        seed: A seed for a new generator (instead of ``generator``).

    Returns:
        A sampler whose ``sample(B)`` gives a ``TaskBatch`` with support inputs
        ``[B, N*K, ...]`` and query inputs ``[B, N*Q, ...]``.

    Raises:
        ValueError: One line when the dataset has fewer than N classes, or a class fewer than
            K + Q examples (naming it), or a count is not positive.

    Examples:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.randn(60, 3), torch.arange(6).repeat_interleave(10))
        >>> batch = dataset_tasks(data, ways=3, shots=2, queries=4, seed=0).sample(8)
        >>> tuple(batch.support.x.shape), tuple(batch.query.y.shape)
        ((8, 6, 3), (8, 12))
    """
    return ClassificationTasks(dataset, ways, shots, queries, split_name="dataset's", generator=generator, seed=seed)


class FunctionTasks:
    """Tasks from a function of the user's: ``make_task(generator) -> (support_x, support_y,
    query_x, query_y)`` for one task, drawing its randomness from the generator it is given."""

    def __init__(self, make_task: Callable[[torch.Generator], Sequence[Tensor]],
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None):
        if not callable(make_task):
            raise UsageError(f"make_task must be a function generator -> (support_x, support_y, query_x, query_y), "
                             f"not {type(make_task).__name__}")
        self.make_task = make_task
        self.generator = _generator(generator, seed) or torch.Generator().manual_seed(
            int(torch.randint(0, 2 ** 62, (1,))))

    def sample(self, tasks: int) -> TaskBatch:
        parts = []
        for _ in range(tasks):
            task = self.make_task(self.generator)
            if not isinstance(task, (tuple, list)) or len(task) != 4 or not all(isinstance(t, Tensor) for t in task):
                raise UsageError("make_task must return four tensors (support_x, support_y, query_x, query_y), got "
                                 f"{type(task).__name__}")
            parts.append(task)
        try:
            stacked = [torch.stack(p) for p in zip(*parts)]
        except RuntimeError as exc:
            raise UsageError(f"the tasks of make_task differ in shape ({first_line(exc, 120)}): return tensors of "
                             "the same shape for every task") from None
        return TaskBatch.of(*stacked)


def function_tasks(make_task: Callable[[torch.Generator], Sequence[Tensor]], *,
                   generator: Optional[torch.Generator] = None, seed: Optional[int] = None) -> FunctionTasks:
    """A task sampler from a function of yours that makes one task.

    Args:
        make_task: ``make_task(generator) -> (support_x, support_y, query_x, query_y)`` for one
            task, drawing its randomness from the ``torch.Generator`` it is given; every task
            must have the same shapes.
        generator: The generator passed to ``make_task``.
        seed: A seed for a new generator (instead of ``generator``).

    Returns:
        A sampler whose ``sample(B)`` stacks B tasks into a ``TaskBatch``.

    Raises:
        ValueError: When ``make_task`` is not callable; at ``sample``, when it does not return
            four tensors or its tasks differ in shape.

    Examples:
        >>> import torch
        >>> def line(g):
        ...     slope = torch.randn(1, generator=g)
        ...     x = torch.randn(15, 1, generator=g)
        ...     return x[:5], slope * x[:5], x[5:], slope * x[5:]
        >>> tuple(function_tasks(line, seed=0).sample(3).query.x.shape)
        (3, 10, 1)
    """
    return FunctionTasks(make_task, generator, seed)
