"""Sine-wave regression tasks of the MAML paper (Finn et al., 2017, section 5.1).

Each task is ``y = A sin(x - phase)`` with ``A ~ U[0.1, 5.0]``, ``phase ~ U[0, pi]`` and
inputs ``x ~ U[-5, 5]``. Tasks are generated on the fly from torch's global generator, so
``torch.manual_seed`` (or ``bilevel_anil.data.episodes.seeded``) makes them reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.tasks import TaskBatch, TaskSet
from .spec import DatasetSpec


@dataclass(frozen=True)
class SineFamily:
    """The ranges tasks are drawn from."""

    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float]) -> Tensor:
    low, high = bounds
    return torch.rand(shape) * (high - low) + low


def sine(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
    """``amplitude * sin(x - phase)`` with per-task amplitude and phase broadcast over ``x``."""
    return amplitude * torch.sin(x - phase)


class SineTasks:
    """K-shot sine regression tasks: ``shots`` support points and ``queries`` query points,
    inputs and targets of shape ``[B, n, 1]``."""

    def __init__(self, shots: int, queries: int, family: SineFamily = SineFamily()):
        self.shots, self.queries, self.family = shots, queries, family

    def sample(self, tasks: int) -> TaskBatch:
        return self.sample_with_truth(tasks)[0]

    def sample_with_truth(self, tasks: int) -> tuple[TaskBatch, Tensor, Tensor]:
        """Tasks together with their amplitudes and phases (``[B, 1, 1]`` each)."""
        amplitude = _uniform((tasks, 1, 1), self.family.amplitude)
        phase = _uniform((tasks, 1, 1), self.family.phase)
        x = _uniform((tasks, self.shots + self.queries, 1), self.family.x_range)
        y = sine(x, amplitude, phase)
        k = self.shots
        return TaskBatch(TaskSet(x[:, :k], y[:, :k]), TaskSet(x[:, k:], y[:, k:])), amplitude, phase


SINE_TEST_SHOTS = (5, 10)  # the MAML paper's K
SINE_TEST_STEPS = (0, 1, 5, 10)  # its evaluation curve


SINE = DatasetSpec(
    "sine", "sine-wave regression", images=False, channels=None,
    # Sine-wave regression as in the MAML paper (K=10, 10 query points, meta-batch 25, 70 000 steps).
    # Inner lr 0.001 as the authors' code runs it (cbfinn/maml: the sinusoid usage line leaves
    # --update_lr at its default 1e-3); the paper's text says 0.01, with which rare test tasks
    # diverge after 5-10 steps (docs/results/sine.md: both measured).
    defaults={"ways": None, "shots": 10, "queries": 10, "test_queries": 100, "inner_lr": 0.001, "meta_lr": 0.001,
              "meta_batch": 25, "iterations": 70000, "val_every": 5000, "val_tasks": 200, "bn": "none"})
