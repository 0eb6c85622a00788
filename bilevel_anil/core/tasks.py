"""Tasks: the support and query sets of B few-shot tasks (``TaskSet``, ``TaskBatch``), the
protocol of a task source (``TaskSampler``), and fixed, reproducible task sets.

Plain tensors and torch's generators only: the samplers that draw tasks from data live in
``bilevel_anil.data``.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
from torch import Tensor

from ..errors import UsageError


@dataclass
class TaskSet:
    """The inputs and targets of one part (support or query) of B tasks.

    Attributes:
        x: Inputs ``[B, n, ...]``.
        y: Class labels ``[B, n]`` or regression targets ``[B, n, out]``.

    Examples:
        >>> import torch
        >>> part = TaskSet(torch.zeros(4, 5, 3), torch.zeros(4, 5, dtype=torch.long))
        >>> part.x.shape[:2] == part.y.shape
        True
    """

    x: Tensor
    y: Tensor


@dataclass
class TaskBatch:
    """B tasks, each with a support set (to adapt on) and a query set (to score).

    Attributes:
        support: The support sets: inputs ``[B, n, ...]``, labels ``[B, n]`` (or regression
            targets ``[B, n, out]``).
        query: The query sets, shaped the same way.

    Examples:
        >>> import torch
        >>> batch = TaskBatch.of(torch.zeros(4, 5, 3), torch.zeros(4, 5, dtype=torch.long),
        ...                      torch.zeros(4, 10, 3), torch.zeros(4, 10, dtype=torch.long))
        >>> batch.tasks, [part.tasks for part in batch.chunks(3)]
        (4, [3, 1])
    """

    support: TaskSet
    query: TaskSet

    @staticmethod
    def of(support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor) -> "TaskBatch":
        """A batch from four tensors, their shapes checked.

        Args:
            support_x: Support inputs ``[B, n, ...]``.
            support_y: Support labels ``[B, n]`` or targets ``[B, n, out]``.
            query_x: Query inputs ``[B, m, ...]``.
            query_y: Query labels ``[B, m]`` or targets ``[B, m, out]``.

        Returns:
            The ``TaskBatch``.

        Raises:
            ValueError: One line on a mismatch (task counts, examples per task, input shapes).
        """
        named = {"support_x": support_x, "support_y": support_y, "query_x": query_x, "query_y": query_y}
        for name, t in named.items():
            if not isinstance(t, Tensor) or t.dim() < 2:
                raise UsageError(f"{name} must be a tensor [B, n, ...] (B tasks of n examples), got "
                                 f"{tuple(getattr(t, 'shape', ())) or type(t).__name__}")
        if len({t.shape[0] for t in named.values()}) != 1:
            raise UsageError("support_x, support_y, query_x and query_y must hold the same number of tasks B, got "
                             + ", ".join(str(t.shape[0]) for t in named.values()))
        for x, y, label in ((support_x, support_y, "support"), (query_x, query_y, "query")):
            if x.shape[1] != y.shape[1]:
                raise UsageError(f"{label}: {x.shape[1]} inputs per task but {y.shape[1]} targets")
        if support_x.shape[2:] != query_x.shape[2:]:
            raise UsageError(f"support and query inputs differ in shape: {tuple(support_x.shape[2:])} vs "
                             f"{tuple(query_x.shape[2:])}")
        return TaskBatch(TaskSet(support_x, support_y), TaskSet(query_x, query_y))

    @property
    def tasks(self) -> int:
        """The number of tasks B.
        """
        return self.support.x.shape[0]

    def to(self, device: torch.device | str) -> "TaskBatch":
        """The batch on ``device``.

        Args:
            device: A torch device or its name.

        Returns:
            A new ``TaskBatch``.
        """
        return TaskBatch(TaskSet(self.support.x.to(device), self.support.y.to(device)),
                            TaskSet(self.query.x.to(device), self.query.y.to(device)))

    def select(self, tasks: slice) -> "TaskBatch":
        """The tasks in a range.

        Args:
            tasks: A slice of task indices.

        Returns:
            A new ``TaskBatch`` of those tasks.
        """
        return TaskBatch(TaskSet(self.support.x[tasks], self.support.y[tasks]),
                            TaskSet(self.query.x[tasks], self.query.y[tasks]))

    def chunks(self, size: int) -> Iterator["TaskBatch"]:
        """Consecutive groups of at most ``size`` tasks.

        Args:
            size: Tasks per group.

        Returns:
            An iterator over ``TaskBatch`` groups, in order.
        """
        for i in range(0, self.tasks, size):
            yield self.select(slice(i, i + size))

    @staticmethod
    def cat(batches: list["TaskBatch"]) -> "TaskBatch":
        """One batch of the tasks of several, in order.

        Args:
            batches: The batches (same shapes apart from the task count).

        Returns:
            A new ``TaskBatch``.
        """
        return TaskBatch(TaskSet(torch.cat([b.support.x for b in batches]), torch.cat([b.support.y for b in batches])),
                            TaskSet(torch.cat([b.query.x for b in batches]), torch.cat([b.query.y for b in batches])))


class TaskSampler(Protocol):
    """The protocol of a task source: anything with ``sample(tasks) -> TaskBatch``.

    A training loop draws one meta-batch per outer step from it (the Env's data source).
    ``function_tasks``, ``dataset_tasks`` and
    ``image_folder_tasks`` return samplers; a class of yours with
    that one method is one too.

    Examples:
        >>> import torch
        >>> class Zeros:  # a sampler of your own: 2-way 1-shot tasks of 3-d zeros
        ...     def sample(self, tasks):
        ...         x, y = torch.zeros(tasks, 2, 3), torch.arange(2).repeat(tasks, 1)
        ...         return TaskBatch.of(x, y, x, y)
        >>> Zeros().sample(4).tasks
        4
    """

    def sample(self, tasks: int) -> TaskBatch:
        """Draw ``tasks`` tasks.

        Args:
            tasks: How many.

        Returns:
            A ``TaskBatch`` of that many tasks.
        """
        ...


class RepeatBatch:
    """A sampler that always serves the same episodes (one fixed meta-batch, e.g. to compare
    meta-gradients or to benchmark an outer step)."""

    def __init__(self, batch: TaskBatch):
        self.batch = batch

    def sample(self, tasks: int) -> TaskBatch:
        if tasks != self.batch.tasks:
            raise ValueError(f"this fixed batch holds {self.batch.tasks} tasks, {tasks} were asked for")
        return self.batch


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


def fixed_tasks(sampler: TaskSampler, tasks: int, seed: int, chunk: int = 100) -> TaskBatch:
    """A reproducible set of tasks (for validation and testing), independent of training draws."""
    with seeded(seed):
        return TaskBatch.cat([sampler.sample(min(chunk, tasks - i)) for i in range(0, tasks, chunk)])
