"""The Env: draws one meta-batch of tasks per outer step for both levels to read."""
from __future__ import annotations

from typing import Optional

from betty.envs import Env

from ..data.episodes import EpisodeBatch, TaskSampler


class EpisodicEnv(Env):
    """Samples B tasks (support and query sets) once per outer step.

    The lower problem reads ``batch.support``, the upper problem ``batch.query``; both see
    the same tasks until the Engine calls :meth:`step` again.
    """

    def __init__(self, sampler: TaskSampler, meta_batch: int):
        super().__init__()
        self.sampler = sampler
        self.meta_batch = meta_batch
        self.batch: Optional[EpisodeBatch] = None

    def step(self) -> EpisodeBatch:
        self.batch = self.sampler.sample(self.meta_batch).to(self.device)
        return self.batch
