"""The two levels of meta-learning as Betty problems.

Lower (name ``"lower"``): adapts the algorithm's adapted parameters on each task's support
set, starting from the upper problem's parameters. Its objective is written once
(``InnerObjective``, via ``Learner.inner_loss``) and used by two Betty bases:

* ``UnrolledAdapt`` (our ``IterativeProblem``): fast weights, the meta-gradient is the
  derivative through the inner SGD steps;
* ``ImplicitAdapt`` (Betty's ``ImplicitProblem``): per-task parameters updated in place
  by SGD, the meta-gradient is Betty's implicit hypergradient at the last iterate.

Upper (``MetaProblem``, name ``"upper"``): owns the meta-parameters θ; its loss is the
mean query loss of the adapted learners over the B tasks. ``ReptileProblem`` replaces
that loss by ``½·mean_b‖θ − φ_b‖²`` (φ_b held fixed), whose gradient θ − mean_b φ_b turns an
SGD step of size ε into Reptile's θ ← θ + ε·mean_b(φ_b − θ). Both levels read the current
meta-batch from the Env.
"""
from __future__ import annotations

from typing import Optional

import torch
from betty.configs import Config
from betty.patch.scheduler import patch_scheduler
from betty.problems import ImplicitProblem
from torch import Tensor, nn

from ..core.tasks import TaskSet
from ..core.distributed import Group
from ..core.learner import Learner, Params, Predictor
from .hypergradients import HypergradConfig, betty_config, register_hypergradients
from .iterative import IterativeProblem


class InnerObjective:
    """The lower problem's loss: ``learner.inner_loss`` on the support set, with the proximal
    anchor θ and (for ANIL) the body features taken from the upper problem at the start of
    each inner loop. Subclasses say where the per-task parameters live (``task_params``)."""

    learner: Learner
    _predict: Optional[Predictor] = None
    _theta: Optional[Params] = None
    _anchor: Optional[Params] = None  # the proximal anchor: θ, with the head's starting point (head_init)
    _support: Optional[TaskSet] = None
    # examples per task in each inner step (Reptile's minibatches); None: the whole support set
    inner_batch: Optional[int] = None
    _batches_drawn = 0
    # Betty's DARTS frees the graph of each loss it differentiates, so the body features
    # cannot be computed once and shared by several evaluations of the loss.
    share_features: bool = True

    def begin_tasks(self) -> dict[str, Tensor]:
        """Read θ and the support set for a new inner loop; returns the starting φ ``[B, ...]``."""
        theta = self.upper.meta_params()
        support = self.env.batch.support  # with inner_batch, the Env shuffled each task's examples
        self._support, self._batches_drawn = support, 0
        self._theta = theta
        self._predict = self.learner.predictor(theta, support.x)
        start = self.learner.initial_fast_params(theta, support.x, support.y, getattr(self._predict, "features", None))
        self._anchor = self.learner.anchor(theta, start)
        return start

    def _current_anchor(self) -> Params:
        """The anchor for one more evaluation of the inner loss. A prototype head is computed
        again where each evaluation's graph is freed after use (DARTS)."""
        if self.share_features or self.learner.head_init != "prototypes":
            return self._anchor
        support = self._support
        return self.learner.anchor(self._theta, self.learner.initial_fast_params(self._theta, support.x, support.y))

    def task_params(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def get_batch(self):
        if not self.inner_batch:
            return self._support
        n = self._support.y.shape[1]
        index = (torch.arange(self.inner_batch) + self._batches_drawn * self.inner_batch) % n
        self._batches_drawn += 1
        return TaskSet(self._support.x[:, index], self._support.y[:, index])

    # the iMAML authors' inner loop (aravindr93/imaml_dev, omniglot_implicit_maml.py): the
    # steps on the support loss alone, then one step on the proximal term, φ ← φ − lr·λ(φ − θ)
    pullback = False
    _free_step = False  # True while such a support-loss-only step runs

    def one_step_descent(self, batch=None):
        self._free_step = self.pullback
        try:
            stats = super().one_step_descent(batch)
        finally:
            self._free_step = False
        if self.pullback and self._count % self._unroll_steps == 0:  # the last step of this inner loop
            self.pull_back()
        return stats

    def pull_back(self) -> None:
        """One SGD step on the proximal term alone: φ ← φ − lr·λ(φ − θ)."""
        raise NotImplementedError

    def training_step(self, batch) -> Tensor:
        # a bare tensor: Betty's hypergradient functions re-evaluate this and differentiate it
        whole = batch is self._support
        predict = self._predict if self.share_features and whole else self.learner.predictor(self._theta, batch.x)
        return self.learner.inner_loss(predict, self.task_params(), batch.y, self._current_anchor(),
                                       proximal=not self._free_step)

    def end_tasks(self) -> None:
        self._predict = None
        self._theta = None
        self._anchor = None
        self._support = None


class UnrolledAdapt(InnerObjective, IterativeProblem):
    """Inner loop with unrolled differentiation (MAML, ANIL, and iMAML with ``--grad unrolled``)."""

    def __init__(self, learner: Learner, lr: float, steps: int, first_order: bool, name: str = "lower",
                 inner_batch: Optional[int] = None, pullback: bool = False):
        IterativeProblem.__init__(self, name, Config(unroll_steps=steps), module=learner.model, lr=lr,
                                  first_order=first_order, optimizer=learner.algorithm.inner_optimizer)
        self.learner = learner
        self.inner_batch = inner_batch
        self.pullback = pullback

    def pull_back(self) -> None:
        """On the fast weights, differentiably (the unrolled gradient goes through it)."""
        lam = self.learner.lam
        lr = self.update.lr
        self.fast_params = {n: p - lr * lam * (p - self._anchor[n]) for n, p in self.fast_params.items()}

    def on_inner_loop_start(self) -> None:
        self.reset(self.begin_tasks())

    def task_params(self) -> dict[str, Tensor]:
        return self.fast_params

    def release(self) -> None:
        IterativeProblem.release(self)
        self.end_tasks()


class TaskParams(nn.Module):
    """Per-task copies ``[B, ...]`` of some of a network's parameters, as real parameters
    (so that Betty's ``ImplicitProblem`` and a torch optimizer can own them)."""

    def __init__(self, model: nn.Module, names: list[str], tasks: int):
        super().__init__()
        params = dict(model.named_parameters())
        self.names = names
        self.values = nn.ParameterList([nn.Parameter(params[n].detach().new_zeros((tasks, *params[n].shape)))
                                        for n in names])

    def as_dict(self) -> dict[str, Tensor]:
        return dict(zip(self.names, self.values))


class ImplicitAdapt(InnerObjective, ImplicitProblem):
    """Inner loop differentiated implicitly (iMAML): ``steps`` SGD steps on the proximal
    objective from θ, then Betty's hypergradient (``hypergrad``) at the last iterate.

    ``pullback=True`` runs the iMAML authors' loop instead (see ``InnerObjective``);
    the hypergradient is the same."""

    def __init__(self, learner: Learner, lr: float, steps: int, tasks: int, hypergrad: HypergradConfig,
                 name: str = "lower", pullback: bool = False):
        if not learner.lam > 0:
            raise ValueError("the implicit meta-gradient needs a proximal term (lam > 0)")
        module = TaskParams(learner.model, learner.adapted_names, tasks)
        # retain_graph: ANIL's body features (computed once from θ) are reused by every step
        config = betty_config(hypergrad, unroll_steps=steps, retain_graph=True)
        ImplicitProblem.__init__(self, name, config, module=module,
                                 optimizer=torch.optim.SGD(module.parameters(), lr=lr))
        self.learner = learner
        self.share_features = hypergrad.method != "darts"
        self.cg_damping = (hypergrad.damping, hypergrad.lam_damping) if hypergrad.method == "cg" else (0.0, 0.0)
        self.pullback = pullback

    def pull_back(self) -> None:
        """In place (the implicit gradient does not differentiate the path)."""
        lr = self.optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            for name, p in self.module.as_dict().items():
                p.sub_(lr * self.learner.lam * (p - self._anchor[name].detach()))

    def on_inner_loop_start(self) -> None:
        start = self.begin_tasks()
        with torch.no_grad():
            for name, p in self.module.as_dict().items():
                p.copy_(start[name])

    def task_params(self) -> dict[str, Tensor]:
        return self.module.as_dict()

    def release(self) -> None:
        self.end_tasks()


def build_lower(learner: Learner, lr: float, steps: int, tasks: int,
                hypergrad: Optional[HypergradConfig] = None, inner_batch: Optional[int] = None,
                pullback: bool = False) -> InnerObjective:
    """The lower problem for ``learner.algorithm``: its ``grad`` picks the Betty base class.
    ``lr`` is the step size of adaptation; for a ``pretrain`` algorithm the meta-training
    inner loop takes zero-size steps instead (``lr`` then applies at validation and test).
    ``inner_batch``: examples per task in each inner step (unrolled only; None: all);
    ``pullback``: the iMAML authors' inner loop (proximal algorithms, see ``InnerObjective``)."""
    register_hypergradients()
    algo = learner.algorithm
    if algo.pretrain:
        lr = 0.0
    if algo.grad == "implicit":
        if inner_batch:
            raise ValueError("the implicit meta-gradient needs full-batch inner steps (inner_batch=None)")
        return ImplicitAdapt(learner, lr, steps, tasks, hypergrad or HypergradConfig(), pullback=pullback)
    if pullback and not algo.proximal:
        raise ValueError("the pull-back inner loop needs a proximal term (imaml, ianil)")
    return UnrolledAdapt(learner, lr, steps, algo.first_order, inner_batch=inner_batch, pullback=pullback)


def build_upper(learner: Learner, optimizer: torch.optim.Optimizer, scheduler=None, chunks: int = 1,
                group: Group = Group()) -> "MetaProblem":
    """The upper problem for ``learner.algorithm``: Reptile's interpolation or the query loss.
    ``chunks``: how many chunks of tasks each outer step accumulates; ``group``: the processes
    whose meta-gradients are averaged."""
    cls = ReptileProblem if learner.algorithm.update == "interpolate" else MetaProblem
    return cls(learner, optimizer, scheduler=scheduler, chunks=chunks, group=group)


class MetaProblem(ImplicitProblem):
    """Outer loop: query loss of the adapted learners; Betty's optimizer updates θ.

    ``implicit=False`` (``Config(first_order=False)``) switches off Betty's hypergradient:
    the meta-gradient is the plain gradient through the unrolled inner loop. ``implicit=True``
    switches it on: Betty adds the implicit term of the lower problem's ``config.type``.
    """

    def __init__(self, learner: Learner, optimizer: torch.optim.Optimizer, name: str = "upper", scheduler=None,
                 chunks: int = 1, group: Group = Group()):
        implicit = learner.algorithm.grad == "implicit"
        # Betty's gradient accumulation: with the meta-batch served in ``chunks`` equal chunks,
        # each chunk's loss is divided by ``chunks`` and θ is updated after the last one.
        super().__init__(name, Config(first_order=implicit, retain_graph=implicit, gradient_accumulation=chunks),
                         module=learner.model, optimizer=optimizer)
        self.learner = learner
        self.group = group
        # Betty would step a scheduler after every chunk; it is stepped after each update instead
        self.outer_schedule = scheduler
        self.last_grads: list[Tensor] = []
        self.last_stats: dict[str, float] = {}

    def patch_optimizer(self) -> None:
        """Betty rebuilds the optimiser from ``trainable_parameters``; the schedule follows it."""
        super().patch_optimizer()
        if self.outer_schedule is not None:
            self.outer_schedule = patch_scheduler(self.outer_schedule, self.optimizer)

    def meta_params(self) -> dict[str, Tensor]:
        """Every parameter of the network by name (frozen ones included: the forward needs them)."""
        return dict(self.module.named_parameters())

    def trainable_parameters(self) -> list[Tensor]:
        """The meta-trained parameters: those with ``requires_grad`` (see ``--train-body``)."""
        return [p for p in self.module.parameters() if p.requires_grad]

    def get_batch(self):
        return self.env.batch.query

    def query_loss(self, batch) -> Tensor:
        """Mean query loss of the adapted learners; records it and the score in ``last_stats``
        (accuracy for classification, the loss itself for regression)."""
        outputs = self.learner.predictor(self.meta_params(), batch.x)(self.lower.task_params())
        loss = self.learner.task_losses(outputs, batch.y).mean()
        if self.learner.loss.classification:
            score = self.learner.task_scores(outputs.detach(), batch.y).mean().item()
        else:
            score = loss.item()
        self.last_stats = {"loss": loss.item(), "score": score}
        return loss

    def training_step(self, batch) -> dict:
        loss = self.query_loss(batch)
        return {"loss": loss, "score": self.last_stats["score"]}

    @property
    def updates_now(self) -> bool:
        """Whether Betty's optimiser step follows this backward (the last chunk of the step)."""
        return self._count % self.gas == 0

    def grad_callback(self) -> None:
        """Before the update: average the meta-gradient over the processes, and keep it (for
        reports and tests)."""
        if not self.updates_now:
            return
        params = self.trainable_parameters()
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.group.average_(p.grad for p in params)
        self.last_grads = [p.grad.detach().clone() for p in params]

    def param_callback(self) -> None:
        """After each update of θ: one step of the outer learning-rate schedule."""
        if self.outer_schedule is not None:
            self.outer_schedule.step()


class ReptileProblem(MetaProblem):
    """Reptile's outer loop: the loss ``½·mean_b‖θ − φ_b‖²`` over the adapted parameters, with
    the adapted weights φ_b held fixed, so the gradient is ``θ − mean_b φ_b`` and an SGD step
    of size ε is θ ← θ + ε·mean_b(φ_b − θ). The reported loss and score are the query set's
    at φ_b (not differentiated)."""

    def training_step(self, batch) -> dict:
        theta, fast = self.meta_params(), self.lower.task_params()
        distance = sum(0.5 * (theta[n] - phi.detach()).pow(2).flatten(1).sum(1) for n, phi in fast.items()).mean()
        with torch.no_grad():
            self.query_loss(batch)
        return {"loss": distance, "score": self.last_stats["score"]}
