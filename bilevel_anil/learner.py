"""A learner: a body/head network, the algorithm's choice of adapted parameters, and a loss.

Both the Betty problems and evaluation go through this one definition of prediction,
task loss and inner-loop adaptation.
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .algorithms import Algorithm
from .fast_weights import inner_optimizer

Params = Mapping[str, Tensor]
Predictor = Callable[[Params], Tensor]


def check_model_contract(model: nn.Module, algorithm: Algorithm) -> None:
    """The network contract, checked when a learner is built (one line, a ``ValueError``):
    ``body_forward(params, x)`` and ``head_forward(params, features)`` over task batches, and
    every parameter in ``body.`` or ``head.`` (which one decides what the inner loop adapts), with
    a non-empty head for the algorithms that adapt only the head. The package's networks meet
    it; wrap another body in ``bilevel_anil.models.TaskBatchedNet(body, features, outputs, arch)``."""
    from .errors import UsageError

    missing = [m for m in ("body_forward", "head_forward") if not callable(getattr(model, m, None))]
    if missing:
        raise UsageError(f"{type(model).__name__} has no {missing[0]}(params, x): wrap the network in "
                         "bilevel_anil.models.TaskBatchedNet(body, features, outputs, arch), which runs any body per task")
    names = [n for n, _ in model.named_parameters()]
    stray = [n for n in names if not n.startswith(("body.", "head."))]
    if stray:
        raise UsageError(f"parameter {stray[0]!r} of {type(model).__name__} is in neither its body ('body.') nor its "
                         f"head ('head.'): {len(stray)} such; put every parameter in one of the two modules")
    if algorithm.adapt == "head" and not any(n.startswith("head.") for n in names):
        raise UsageError(f"{algorithm.name} adapts the head, but {type(model).__name__} has no 'head.' parameter")


class Learner:
    """Binds a network (with ``body_forward``/``head_forward``) to an algorithm and a loss.

    loss: ``"cross_entropy"`` (classification, labels ``[B, n]``) or ``"mse"`` (regression,
    targets ``[B, n, out]``).
    lam: strength λ of the proximal term ``(λ/2)·‖φ − θ‖²`` of the inner objective, per task
    (the iMAML paper's definition); used only when the algorithm is proximal (0 is allowed for
    test-time adaptation; meta-training needs λ > 0).
    """

    def __init__(self, model: nn.Module, algorithm: Algorithm, loss: str = "cross_entropy", lam: float = 0.0):
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"unknown loss {loss!r}")
        if algorithm.proximal and not lam >= 0:
            raise ValueError(f"{algorithm.name} needs a proximal strength lam >= 0, got {lam}")
        check_model_contract(model, algorithm)
        self.model = model
        self.algorithm = algorithm
        self.loss = loss
        self.lam = lam if algorithm.proximal else 0.0
        self.adapted_names = [n for n, _ in model.named_parameters() if algorithm.adapts(n)]
        self.adapts_body = any(not n.startswith("head.") for n in self.adapted_names)

    def with_lam(self, lam: float) -> "Learner":
        """The same learner with proximal strength ``lam`` (e.g. λ = 0 for test-time adaptation)."""
        return Learner(self.model, self.algorithm, self.loss, lam)

    def meta_params(self) -> dict[str, Tensor]:
        """The meta-parameters (the initialisation) by name."""
        return dict(self.model.named_parameters())

    def initial_fast_params(self, theta: Params, tasks: int) -> dict[str, Tensor]:
        """Per-task copies ``[B, ...]`` of the adapted meta-parameters, differentiable in theta."""
        return {n: theta[n].unsqueeze(0).expand(tasks, *theta[n].shape) for n in self.adapted_names}

    def predictor(self, theta: Params, x: Tensor) -> Predictor:
        """Return ``fast -> outputs [B, n, out]`` for inputs ``x`` of shape ``[B, n, ...]``.

        When the body is not adapted (ANIL) its features are computed here once and reused by
        every call, so inner steps only run the head.
        """
        model = self.model
        if not self.adapts_body:
            features = model.body_forward(theta, x)
            return lambda fast: model.head_forward({**theta, **fast}, features)
        return lambda fast: model.head_forward({**theta, **fast}, model.body_forward({**theta, **fast}, x))

    def task_losses(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean loss of each task ``[B]``."""
        if self.loss == "cross_entropy":
            per_example = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
            return per_example.view(targets.shape).mean(dim=1)
        return (outputs - targets).pow(2).flatten(1).mean(dim=1)

    def task_accuracies(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Fraction of correct predictions of each task ``[B]`` (classification only)."""
        return (outputs.argmax(dim=-1) == targets).float().mean(dim=1)

    def inner_loss(self, predict: Predictor, fast: Params, targets: Tensor, theta: Params,
                   proximal: bool = True) -> Tensor:
        """The inner objective summed over tasks: each task's mean support loss, plus
        ``(λ/2)·‖φ_b − θ‖²`` for proximal algorithms (unless ``proximal`` is False). Its
        gradient with respect to per-task fast weights ``φ_b`` is each task's own gradient."""
        loss = self.task_losses(predict(fast), targets).sum()
        if self.lam and proximal:
            loss = loss + 0.5 * self.lam * sum((p - theta[n]).pow(2).sum() for n, p in fast.items())
        return loss

    def adapt_path(self, theta: Params, x: Tensor, y: Tensor, steps: int, lr: float) -> Iterator[dict[str, Tensor]]:
        """Yield the fast weights after 0, 1, ..., ``steps`` steps of the algorithm's inner
        optimiser on the support set ``(x, y)``, detached from theta (for evaluation and prediction)."""
        theta = {n: p.detach() for n, p in theta.items()}
        predict = self.predictor(theta, x)
        fast = {n: p.clone() for n, p in self.initial_fast_params(theta, x.shape[0]).items()}
        update = inner_optimizer(self.algorithm.inner_optimizer, lr)
        yield fast
        for _ in range(steps):
            with torch.enable_grad():
                fast = {n: p.requires_grad_() for n, p in fast.items()}
                grads = torch.autograd.grad(self.inner_loss(predict, fast, y, theta), list(fast.values()))
            fast = {n: p.detach() for n, p in update.step(fast, grads).items()}
            yield fast

    def adapt(self, theta: Params, x: Tensor, y: Tensor, steps: int, lr: float) -> dict[str, Tensor]:
        """Fast weights after ``steps`` inner steps on the support set (no meta-graph)."""
        for fast in self.adapt_path(theta, x, y, steps, lr):
            pass
        return fast
