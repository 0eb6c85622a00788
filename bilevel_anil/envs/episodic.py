"""The Env: draws one meta-batch of tasks per outer step for both levels to read."""
from __future__ import annotations

from typing import Optional

import torch
from betty.envs import Env
from torch import Tensor

from ..core.tasks import TaskBatch, TaskSampler, TaskSet
from ..core.distributed import Group, check_task_split


def shuffle_examples(tasks: TaskSet) -> TaskSet:
    """Each task's examples in its own random order (for inner-loop minibatches)."""
    order = torch.rand(tasks.y.shape[:2], device=tasks.y.device).argsort(dim=1)

    def shuffled(t: Tensor) -> Tensor:
        return t.gather(1, order.view(*order.shape, *[1] * (t.dim() - 2)).expand_as(t))
    return TaskSet(shuffled(tasks.x), shuffled(tasks.y))


class EpisodicEnv(Env):
    """Samples B tasks (support and query sets) once per outer step.

    The lower problem reads ``batch.support``, the upper problem ``batch.query``; both see
    the same tasks until the Engine selects another chunk or calls ``step`` again.

    * ``task_chunk`` C: the tasks are served C at a time (``select``); the Engine runs the
      inner loop and the meta-gradient chunk by chunk and the upper problem accumulates it,
      so memory follows C, not B.
    * ``group``: with several processes, every one draws the same B tasks (the same seed) and
      keeps its contiguous share, so the tasks of a step do not depend on the process count.
    * ``shuffle_support``: each task's support examples in a new random order every step
      (Reptile's minibatches are consecutive slices of it).
    """

    def __init__(self, sampler: TaskSampler, meta_batch: int, task_chunk: Optional[int] = None,
                 group: Group = Group(), shuffle_support: bool = False):
        super().__init__()
        self.sampler = sampler
        self.meta_batch = meta_batch
        self.group = group
        check_task_split(meta_batch, task_chunk, group.world_size)
        self.local_tasks = meta_batch // group.world_size
        self.task_chunk = task_chunk or self.local_tasks
        self.shuffle_support = shuffle_support
        self.chunks: list[TaskBatch] = []
        self.batch: Optional[TaskBatch] = None

    @property
    def chunk_count(self) -> int:
        return self.local_tasks // self.task_chunk

    def step(self) -> TaskBatch:
        """Draw the next meta-batch; the first chunk becomes ``batch``."""
        full = self.sampler.sample(self.meta_batch)
        if self.shuffle_support:
            full = TaskBatch(shuffle_examples(full.support), full.query)
        mine = full.select(self.group.share(self.meta_batch))
        self.chunks = [c.to(self.device) for c in mine.chunks(self.task_chunk)]
        return self.select(0)

    def select(self, chunk: int) -> TaskBatch:
        """Serve the ``chunk``-th group of C tasks of this step to both levels."""
        self.batch = self.chunks[chunk]
        return self.batch
