"""The two levels of meta-learning as Betty problems.

Lower (``AdaptProblem``, name ``"lower"``): adapts the algorithm's adapted parameters on
each task's support set, starting from the upper problem's parameters.
Upper (``MetaProblem``, name ``"upper"``): owns the meta-parameters (body and head
initialisation); its loss is the mean query loss of the adapted learners over the B tasks.
Both read the current meta-batch from the Env.
"""
from __future__ import annotations

import torch
from betty.configs import Config
from betty.problems import ImplicitProblem
from torch import Tensor

from ..learner import Learner
from .iterative import IterativeProblem


class AdaptProblem(IterativeProblem):
    """Inner loop: SGD on the support loss of every task of the meta-batch at once."""

    def __init__(self, learner: Learner, lr: float, steps: int, first_order: bool, name: str = "lower"):
        super().__init__(name, Config(unroll_steps=steps), module=learner.model, lr=lr, first_order=first_order)
        self.learner = learner
        self._predict = None

    def on_inner_loop_start(self) -> None:
        theta = self.upper.meta_params()
        support = self.env.batch.support
        self._predict = self.learner.predictor(theta, support.x)
        self.reset(self.learner.initial_fast_params(theta, support.x.shape[0]))

    def get_batch(self):
        return self.env.batch.support

    def training_step(self, batch) -> dict:
        loss = self.learner.inner_loss(self._predict, self.fast_params, batch.y)
        return {"loss": loss}

    def release(self) -> None:
        super().release()
        self._predict = None


class MetaProblem(ImplicitProblem):
    """Outer loop: query loss of the adapted learners; Betty's optimizer updates theta.

    ``Config(first_order=False)`` switches off Betty's implicit hypergradient: the
    meta-gradient is the plain gradient through the unrolled inner loop.
    """

    def __init__(self, learner: Learner, optimizer: torch.optim.Optimizer, name: str = "upper"):
        super().__init__(name, Config(first_order=False), module=learner.model, optimizer=optimizer)
        self.learner = learner
        self.last_grads: list[Tensor] = []
        self.last_stats: dict[str, float] = {}

    def meta_params(self) -> dict[str, Tensor]:
        return dict(self.module.named_parameters())

    def get_batch(self):
        return self.env.batch.query

    def training_step(self, batch) -> dict:
        outputs = self.learner.predictor(self.meta_params(), batch.x)(self.lower.fast_params)
        loss = self.learner.task_losses(outputs, batch.y).mean()
        if self.learner.loss == "cross_entropy":
            score = self.learner.task_accuracies(outputs.detach(), batch.y).mean().item()
        else:
            score = loss.item()
        self.last_stats = {"loss": loss.item(), "score": score}
        return {"loss": loss, "score": score}

    def grad_callback(self) -> None:
        """Keep the meta-gradient of the step (for reports and tests) before the update."""
        self.last_grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                           for p in self.trainable_parameters()]
