"""The Engine: the order of one outer step (Betty's problems and their dependencies). The
loop around it (validation, checkpoints, metrics, stopping) is ``bilevel_anil.training.loop``."""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import torch
from betty.configs import EngineConfig
from betty.engine import Engine
from betty.logging.logger_base import get_logger

from ..core.distributed import Group
from ..core.learner import Learner
from ..core.tasks import TaskSampler
from ..envs.episodic import EpisodicEnv
from ..errors import TrainingDiverged
from ..problems import HypergradConfig, InnerObjective, MetaProblem, build_lower, build_upper


class MetaEngine(Engine):
    """One outer step = the Env draws a meta-batch, then ``inner_steps`` lower steps run;
    Betty calls the upper step after the last of them (``unroll_steps``)."""

    def __init__(self, upper: MetaProblem, lower: InnerObjective, env: EpisodicEnv, inner_steps: int,
                 device: str = "cpu"):
        get_logger().setLevel(logging.WARNING)  # Betty logs its set-up at INFO on stdout
        self.inner_steps, self.run_device = inner_steps, device
        self.group = env.group
        # Betty's own loop (Engine.run) is not used: train_iters only sizes its bookkeeping
        config = EngineConfig(train_iters=inner_steps, valid_step=inner_steps)
        super().__init__(problems=[upper, lower], config=config, env=env,
                         dependencies={"u2l": {upper: [lower]}, "l2u": {lower: [upper]}})

    # ordering --------------------------------------------------------------------------
    def train_step(self, check_finite: bool = True) -> dict[str, float]:
        """One outer step: the Env draws the meta-batch; for each chunk of its tasks the lower
        problem takes ``inner_steps`` steps and Betty then calls the upper problem, which
        accumulates the meta-gradient and updates θ after the last chunk (averaged over the
        processes). Returns the query loss and score over this process's tasks.

        ``check_finite``: raise ``TrainingDiverged`` on a non-finite query loss (``run``
        checks after averaging over the processes instead, so that all of them stop together)."""
        upper_steps, chunks = self.upper.count, self.env.chunk_count
        self.env.step()
        totals: dict[str, float] = {}
        for chunk in range(chunks):
            if chunk:
                self.env.select(chunk)
            for _ in range(self.inner_steps):
                self.global_step += 1
                for leaf in self.leaves:
                    leaf.step(global_step=self.global_step)
            self.lower.release()
            for key, value in self.upper.last_stats.items():
                totals[key] = totals.get(key, 0.0) + value / chunks
        if self.upper.count != upper_steps + chunks:
            raise RuntimeError("the upper problem did not step once per chunk: check unroll_steps")
        if check_finite and not math.isfinite(totals.get("loss", 0.0)):
            raise TrainingDiverged(f"meta-training diverged at outer step {self.upper.count // chunks} (non-finite "
                                   "query loss): lower ⟨inner_lr⟩ or ⟨meta_lr⟩")
        return totals

    def configure_systems(self) -> dict[str, Any]:
        """Betty's own ``distributed`` strategy calls ``torch.cuda.set_device`` and wraps modules
        in DDP, which the functional fast weights bypass; and any strategy but ``default``
        broadcasts each problem's parameters from rank 0 every 20 updates, which would
        overwrite the per-task parameters of the implicit lower problem. So the problems get
        the ``default`` strategy with this run's ranks, and the upper problem averages the
        meta-gradient itself (``MetaProblem.grad_callback``)."""
        self._strategy = "default"
        self._backend = "nccl" if self.run_device.startswith("cuda") else "gloo"
        self._world_size, self._rank, self._local_rank = self.group.world_size, self.group.rank, self.group.local_rank
        self.device = self.run_device
        return {"strategy": self._strategy, "backend": self._backend, "world_size": self._world_size,
                "rank": self._rank, "local_rank": self._local_rank}



def build_engine(learner: Learner, sampler: TaskSampler, meta_batch: int, inner_lr: float, inner_steps: int,
                 optimizer: torch.optim.Optimizer, *, device: str = "cpu", scheduler=None,
                 hypergrad: Optional[HypergradConfig] = None, inner_batch: Optional[int] = None,
                 task_chunk: Optional[int] = None, pullback: bool = False, group: Group = Group()) -> MetaEngine:
    """The Env, the Upper and Lower problems and the Engine of one training loop, assembled
    in one place for ``bilevel_anil.MetaLearner`` (its ``fit`` and single steps)."""
    env = EpisodicEnv(sampler, meta_batch, task_chunk, group, shuffle_support=bool(inner_batch))
    upper = build_upper(learner, optimizer, scheduler, chunks=env.chunk_count, group=group)
    lower = build_lower(learner, inner_lr, inner_steps, env.task_chunk, hypergrad, inner_batch, pullback=pullback)
    return MetaEngine(upper, lower, env, inner_steps, device)


def step_engine(learner: Learner, sampler: TaskSampler, tasks: int, inner_steps: int, inner_lr: float,
                optimizer: torch.optim.Optimizer, hypergrad: Optional[HypergradConfig] = None,
                device: str = "cpu", inner_batch: Optional[int] = None, task_chunk: Optional[int] = None,
                group: Group = Group(), pullback: bool = False) -> MetaEngine:
    """An engine for taking single outer steps with ``MetaEngine.train_step`` (tests, the
    gradient comparison, benchmarks)."""
    return build_engine(learner, sampler, tasks, inner_lr, inner_steps, optimizer, device=device, hypergrad=hypergrad,
                        inner_batch=inner_batch, task_chunk=task_chunk, pullback=pullback, group=group)
