"""The package's Python API: ``MetaLearner``, one object per meta-learning run.

It binds any ``nn.Module`` to an algorithm (maml, fomaml, anil, foanil, imaml, ianil, reptile,
pretrain), meta-trains it through the same Env, Problems and Engine as ``run.py`` (Betty), and
evaluates, adapts, saves and loads it. Swapping the unrolled and the implicit meta-gradient is
one argument (``grad=``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..training.schema import LearnerRecord, RunCheckpoint, read_run, require_plain, write_run
from ._builders import learner_arguments, network_for, outer_optimizer
from .adapted import Adapted, _has_batch_norm
from ..core import distributed
from ..core.algorithms import evaluation_steps
from ..core.options import check_options, resolve_algorithm
from ..training.callbacks import Callback
from ..core.tasks import TaskBatch, TaskSampler
from ..errors import UsageError, first_line, load_failure, require_positive
from ..core.evaluation import Interval, eval_mode, evaluate
from ..core.learner import Learner
from ..core.losses import LOSSES, TaskLoss
from ..core.network import HeadSpec
from ..core.solvers import HypergradConfig

_LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


class _Feed:
    """A sampler that serves the batch it was last given (``meta_step``, ``meta_gradient``)."""

    batch: Optional[TaskBatch] = None

    def sample(self, tasks: int) -> TaskBatch:
        return self.batch


class _NoUpdate(torch.optim.Optimizer):
    """An optimiser whose step leaves the parameters as they are (``meta_gradient``)."""

    def __init__(self, params: Iterable[Tensor]):
        super().__init__(params, {})

    def step(self, closure=None):
        return None


@dataclass
class FitResult:
    """What ``MetaLearner.fit`` did.

    Attributes:
        best: The best validation record ``{"step", "val_score", "val_ci95"}``; None without
            validation.
        steps_done: The outer steps taken (counting resumed ones).
        train_seconds: Seconds of outer steps in this session (validation excluded).
        last_loss: The last step's mean query loss.
        out: The folder written; None when ``fit`` was given no ``out``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from bilevel_anil import MetaLearner, function_tasks
        >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
        ...     x = torch.randn(10, 1, generator=g)
        ...     y = torch.randn(1, generator=g) * x
        ...     return x[:5], y[:5], x[5:], y[5:]
        >>> tasks = function_tasks(line, seed=0)
        >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
        >>> result = learner.fit(tasks, steps=4, meta_batch=2)  # doctest: +ELLIPSIS
        step 1/4  loss ...  steps/s
        ...
        >>> result.steps_done, result.best, result.out
        (4, None, None)
    """

    best: Optional[dict]
    steps_done: int
    train_seconds: float
    last_loss: Optional[float]
    out: Optional[Path]

    @property
    def steps_per_second(self) -> Optional[float]:
        return self.steps_done / self.train_seconds if self.train_seconds > 0 else None


def _scheduler(schedule: Callable[[torch.optim.Optimizer], Any], optimizer: torch.optim.Optimizer) -> Any:
    """``fit``'s ``schedule(optimizer)``, which must be a learning-rate scheduler (it is stepped
    after each outer step and saved with the checkpoints)."""
    made = schedule(optimizer)
    if not (callable(getattr(made, "step", None)) and callable(getattr(made, "state_dict", None))):
        raise UsageError(f"schedule(optimizer) returned {type(made).__name__}, not a learning-rate scheduler: return "
                         "one, e.g. torch.optim.lr_scheduler.LambdaLR(optimizer, ...)")
    return made


class MetaLearner:
    """Meta-learn an initialisation of ``model`` with one of the package's algorithms.

    MAML and ANIL differ only in which parameters the inner loop adapts (``adapt``); the
    unrolled and the implicit meta-gradient only in ``grad``. The split of the network is
    checked here, so a wrong head is one ``ValueError`` line at once; a module that cannot run
    one task at a time under ``torch.func.vmap`` says so on the first batch.

    Args:
        model: Any ``nn.Module`` taking one task's inputs ``[n, ...]``; its parameters are the
            meta-parameters θ and are trained in place.
        algorithm: ``"maml"``, ``"fomaml"``, ``"anil"``, ``"foanil"``, ``"imaml"``,
            ``"ianil"``, ``"reptile"``, ``"pretrain"`` or ``"protonet"`` (or a resolved
            ``bilevel_anil.core.algorithms.Algorithm``).
        loss: ``"cross_entropy"`` (labels ``[n]``), ``"mse"`` (targets ``[n, out]``) or a
            function ``loss(outputs, targets) -> scalar`` of one task.
        head: The network's head: a submodule's name, the module, or a predicate on parameter
            names; default the submodule whose output is the network's (found by running it once on a
            blank input; when that cannot be told, ANIL-type algorithms ask for head=). ANIL-type
            algorithms adapt it.
        adapt: ``"all"``, ``"head"`` or a predicate on parameter names: which parameters the
            inner loop adapts (default: the algorithm's; ``"head"`` turns maml into anil).
        grad: ``"unrolled"``, ``"implicit"`` (iMAML's proximal objective) or ``"first_order"``
            (default: the algorithm's). One argument swaps the meta-gradient on the same
            learner.
        inner_lr: The inner loop's step size.
        inner_steps: The inner loop's steps in meta-training.
        test_inner_steps: Inner steps at evaluation (default ``inner_steps``).
        lam: Proximal strength λ of imaml/ianil.
        test_lam: λ at evaluation (default ``lam``).
        hypergrad: The implicit gradient's solver (``"cg"``, ``"neumann"``, ``"darts"``,
            ``"betty-cg"``), or a ``bilevel_anil.core.solvers.HypergradConfig`` with every setting
            (Neumann's step, DARTS's radius, CG's damping).
        hypergrad_iterations: The solver's iterations.
        meta_lr: The outer step size.
        meta_optimizer: The outer optimiser: default Adam (SGD for reptile) at ``meta_lr``; or a
            ``torch.optim.Optimizer`` class, or a function ``params -> optimizer``.
        inner_batch: Reptile's inner minibatch size.
        task_chunk: Tasks per chunk of an outer step (memory follows the chunk; the step is
            the same).
        inner_optimizer: ``"sgd"`` or ``"adam"`` (β1 = 0, as in Reptile) for the inner loop
            (default: the algorithm's: Adam for reptile, SGD otherwise).
        inner_proximal: imaml/ianil: ``"every"`` (the proximal term in every inner step) or
            ``"pullback"`` (the iMAML authors' loop: support-loss steps, then one proximal
            step).
        head_init: Where each task's inner loop starts the head (default: the algorithm's,
            e.g. ``"prototypes"`` for protonet): ``"learned"`` (the meta-learned head),
            ``"zero"`` or ``"prototypes"`` (Proto-MAML: the support set's class means at θ,
            differentiably). The same start is used at evaluation and in ``adapt``.
        device: Where θ and the tasks live (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Raises:
        ValueError: One line naming the problem: an unknown algorithm, loss or solver, a head
            that does not exist or has no parameters, a non-positive count or rate, a
            combination that is not defined (``grad="implicit"`` without the proximal
            objective), a device that is not there.

    Examples:
        Sine-wave regression with a plain ``nn.Sequential``:

        >>> import torch
        >>> from torch import nn
        >>> from bilevel_anil import MetaLearner, TaskBatch, function_tasks
        >>> def sine_task(g):
        ...     amplitude, phase = 0.1 + 4.9 * torch.rand(1, generator=g), 3.1416 * torch.rand(1, generator=g)
        ...     x = 10 * torch.rand(20, 1, generator=g) - 5
        ...     y = amplitude * torch.sin(x + phase)
        ...     return x[:10], y[:10], x[10:], y[10:]
        >>> tasks = function_tasks(sine_task, seed=0)
        >>> net = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))
        >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.01)
        >>> stats = learner.meta_step(tasks.sample(4))
        >>> sorted(stats)
        ['loss', 'score']
        >>> learner.meta_gradient(tasks.sample(4))["4.bias"].shape
        torch.Size([1])
    """

    def __init__(self, model: nn.Module, algorithm: str = "maml", *,
                 loss: Union[str, Callable, TaskLoss] = "cross_entropy", head: HeadSpec = None,
                 adapt: Union[None, str, Callable[[str], bool]] = None, grad: Optional[str] = None,
                 inner_lr: float = 0.1, inner_steps: int = 1, test_inner_steps: Optional[int] = None,
                 lam: Optional[float] = None, test_lam: Optional[float] = None,
                 hypergrad: Union[None, str, HypergradConfig] = None, hypergrad_iterations: Optional[int] = None,
                 meta_lr: float = 1e-3, meta_optimizer: Any = None, inner_batch: Optional[int] = None,
                 task_chunk: Optional[int] = None, inner_optimizer: Optional[str] = None,
                 inner_proximal: Optional[str] = None, head_init: Optional[str] = None, device: str = "cpu"):
        from ..errors import require_device

        self.algorithm = resolve_algorithm(algorithm, adapt, grad, inner_optimizer)
        options = {"inner_lr": inner_lr, "inner_steps": inner_steps, "test_inner_steps": test_inner_steps,
                   "lam": lam, "test_lam": test_lam, "hypergrad": hypergrad,
                   "hypergrad_iterations": hypergrad_iterations, "meta_lr": meta_lr, "inner_batch": inner_batch,
                   "task_chunk": task_chunk, "inner_proximal": inner_proximal, "head_init": head_init}
        check_options(self.algorithm, options, given=[name for name, value in options.items() if value is not None])
        if isinstance(hypergrad, HypergradConfig) and hypergrad_iterations is not None:
            raise UsageError("hypergrad_iterations: give the iterations in the HypergradConfig passed as hypergrad")
        lam = 1.0 if lam is None else lam
        require_device(device)
        self.device = device
        self.model = model.to(device) if isinstance(model, nn.Module) else model
        self.learner = Learner(self.model, self.algorithm, loss, lam=lam, head=head,
                               adapt=adapt if callable(adapt) else None, head_init=head_init)
        self.test_learner = self.learner.with_lam(lam if test_lam is None else test_lam)
        self.inner_lr, self.inner_steps = float(inner_lr), int(inner_steps)
        self.test_inner_steps = int(evaluation_steps(self.algorithm, self.learner.head_init, inner_steps)
                                    if test_inner_steps is None else test_inner_steps)
        self.hypergrad = hypergrad if isinstance(hypergrad, HypergradConfig) else HypergradConfig(
            **{k: v for k, v in (("method", hypergrad), ("iterations", hypergrad_iterations)) if v is not None})
        self.inner_proximal = inner_proximal or "every"
        self.meta_lr, self.inner_batch, self.task_chunk = float(meta_lr), inner_batch, task_chunk
        self.optimizer = self._make_optimizer(meta_optimizer)
        self.steps_taken = 0
        self._feed = _Feed()
        self._engines: dict[tuple, Any] = {}

    # --- building blocks ----------------------------------------------------------------
    def _trainable(self) -> list[Tensor]:
        """The meta-trained parameters (those that require a gradient)."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def _optimizer_like(self) -> torch.optim.Optimizer:
        """A new optimiser of this learner's class and settings (Betty rebuilds it anyway)."""
        return type(self.optimizer)(self._trainable(), **self.optimizer.defaults)

    def _make_optimizer(self, spec: Any) -> torch.optim.Optimizer:
        return outer_optimizer(spec, self._trainable(), self.model, self.algorithm, self.meta_lr)

    def _step_engine(self, tasks: int, gradient_only: bool = False):
        """A Betty engine for single outer steps on ``tasks`` tasks (kept per size); the outer
        optimiser's state moves with the learner, not with the engine."""
        from ..engines import step_engine

        key = (tasks, gradient_only)
        if key not in self._engines:
            optimizer = _NoUpdate(self._trainable()) if gradient_only else self._optimizer_like()
            self._engines[key] = step_engine(self.learner, self._feed, tasks, self.inner_steps, self.inner_lr,
                                             optimizer, self.hypergrad, self.device, self.inner_batch,
                                             self.task_chunk if self.task_chunk and tasks % self.task_chunk == 0
                                             else None, pullback=self.inner_proximal == "pullback")
        engine = self._engines[key]
        if not gradient_only and engine.upper.optimizer is not self.optimizer:
            engine.upper.optimizer.load_state_dict(self.optimizer.state_dict())
            self.optimizer = engine.upper.optimizer
        return engine

    @property
    def outputs(self) -> Optional[int]:
        """The number of classes the head scores (its ``out_features``) when the head is one
        ``nn.Linear``; None otherwise.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> learner.outputs
            1
        """
        module = self.model.get_submodule(self.learner.head.module) if self.learner.head.module else None
        return module.out_features if isinstance(module, nn.Linear) else None

    def _check_labels(self, labels: Tensor, part: str) -> None:
        """Class labels (for the cross-entropy loss) are integers 0..N-1, N at most the head's
        outputs: one line otherwise."""
        if not self.learner.loss.classification:
            return
        outputs = self.outputs
        if labels.dtype not in _LABEL_DTYPES or (labels.numel() and (
                labels.min() < 0 or (outputs is not None and labels.max() >= outputs))):
            span = f"from {labels.min().item()} to {labels.max().item()}" if labels.numel() else "(none)"
            raise UsageError(f"{part} labels must be integers 0..{'N-1' if outputs is None else outputs - 1} for the "
                             f"cross-entropy loss{'' if outputs is None else f' (the head has {outputs} outputs)'}, "
                             f"got {labels.dtype} values {span}")

    def _check_batch(self, batch: TaskBatch) -> TaskBatch:
        if not isinstance(batch, TaskBatch):
            raise UsageError(f"expected a TaskBatch (support and query sets of B tasks), got {type(batch).__name__}: "
                             "build one with TaskBatch.of(support_x, support_y, query_x, query_y)")
        self._check_labels(batch.support.y, "support")
        self._check_labels(batch.query.y, "query")
        return batch

    def _outer_step(self, batch: TaskBatch, gradient_only: bool):
        """One outer step on ``batch`` through the engine for its size; returns the engine and
        the step's query loss and score."""
        batch = self._check_batch(batch).to(self.device)
        engine = self._step_engine(batch.tasks, gradient_only)
        self._feed.batch = batch
        self.model.train()
        try:
            stats = engine.train_step(check_finite=True)
        except IndexError as exc:  # a class label at or above the network's number of outputs
            raise UsageError(f"a label does not fit the network's outputs ({first_line(exc, 120)}): labels must be "
                             "0..N-1 with N at most the network's number of outputs") from None
        finally:
            self._feed.batch = None
        return engine, stats

    # --- meta-training -----------------------------------------------------------------
    def meta_step(self, batch: TaskBatch) -> dict[str, float]:
        """One outer step: adapt to each task's support set, then update θ with the meta-gradient
        of the query loss.

        Args:
            batch: The tasks of this step (``TaskBatch``).

        Returns:
            The mean query ``"loss"`` and ``"score"`` of the batch after adaptation (accuracy, or
            the loss for regression).

        Raises:
            TrainingDiverged: On a non-finite loss (``bilevel_anil.errors.TrainingDiverged``).
            ValueError: On a batch whose shapes or labels the network and loss cannot take.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> stats = learner.meta_step(tasks.sample(4))
            >>> sorted(stats)
            ['loss', 'score']
        """
        _, stats = self._outer_step(batch, gradient_only=False)
        self.steps_taken += 1
        return stats

    def meta_gradient(self, batch: TaskBatch) -> dict[str, Tensor]:
        """The meta-gradient of one batch, without updating θ.

        Args:
            batch: The tasks (``TaskBatch``).

        Returns:
            The gradient of the mean query loss after adaptation, by parameter name, for every
            parameter that requires a gradient.

        Raises:
            ValueError: On a batch whose shapes or labels the network and loss cannot take.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> grads = learner.meta_gradient(tasks.sample(4))
            >>> sorted(grads), grads["2.weight"].shape
            (['0.bias', '0.weight', '2.bias', '2.weight'], torch.Size([1, 8]))
        """
        engine, _ = self._outer_step(batch, gradient_only=True)
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        return dict(zip(names, engine.upper.last_grads))

    def fit(self, tasks: TaskSampler, steps: int, *, meta_batch: int = 16, validation: Optional[TaskBatch] = None,
            val_every: Optional[int] = None, out: Union[None, str, Path] = None, time_budget: Optional[float] = None,
            resume: bool = False, progress: Optional[bool] = False, callbacks: Sequence[Callback] = (),
            schedule: Optional[Callable[[torch.optim.Optimizer], Any]] = None, log: str = "csv",
            metadata: Optional[dict] = None) -> FitResult:
        """Meta-train for ``steps`` outer steps of ``meta_batch`` tasks drawn from ``tasks``.

        It runs the same engine as ``run.py`` (which calls this learner's training loop): metrics
        (``metrics.csv``) and checkpoints (``last.pt``; ``best.pt`` by validation score) in
        ``out``, continued with ``resume=True``; under torchrun the tasks of a step are split over
        the processes. A resumed fit must be built as the one it continues (algorithm, loss, inner
        loop, λ, head).

        Args:
            tasks: A sampler: anything with ``sample(n) -> TaskBatch``.
            steps: Outer steps in all (a resumed fit counts the steps already taken).
            meta_batch: Tasks per outer step.
            validation: Fixed tasks scored every ``val_every`` steps after ``test_inner_steps``
                inner steps; at the end θ is set to the best ones.
            val_every: Steps between validations (default: 10 validations per fit).
            out: A folder for ``metrics.csv``, ``last.pt`` and ``best.pt``; None writes nothing.
            time_budget: Stop after this many seconds of outer steps.
            resume: Continue from ``out/last.pt`` (one line when there is none).
            progress: Show a progress bar.
            callbacks: Called after each outer step with its
                ``StepInfo``; one that returns True stops the fit there
                (validated and checkpointed), e.g. ``EarlyStopping``; None or False goes on.
            schedule: ``optimizer -> torch.optim.lr_scheduler`` for the outer optimiser, stepped
                after each outer step (``run.py`` anneals Reptile's ε to 0 with one).
            log: ``"csv"``, or ``"tensorboard"`` for TensorBoard events in ``out/tensorboard`` too.
            metadata: Plain values stored with the weights in every checkpoint (``run``
                of ``bilevel_anil.training.schema.RunCheckpoint``): ``run.py`` keeps its run
                settings there, a user whatever describes the run.

        Returns:
            A ``FitResult``.

        Raises:
            ValueError: One line on a bad setting, a folder another run holds, or a resumed fit
                built differently from the one it continues (naming the setting).
            TrainingDiverged: On a non-finite loss; ``last.pt`` in ``out`` stays intact.
            TypeError: When a callback returns anything but True, False or None.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> validation = function_tasks(line, seed=1).sample(16)
            >>> result = learner.fit(tasks, steps=6, meta_batch=4, validation=validation, val_every=3)  # doctest: +ELLIPSIS
            step 3/6  loss ...  val ... ± ...  ... steps/s
            step 6/6  loss ...
            >>> result.steps_done, result.best["step"] in (3, 6)
            (6, True)
        """
        from ..training.run_lock import RunFolderLock

        require_positive("steps", steps, integer=True)
        require_positive("meta_batch", meta_batch, integer=True)
        if val_every is not None:
            require_positive("val_every", val_every, integer=True)
        if time_budget is not None:
            require_positive("time_budget", time_budget)
        if not isinstance(callbacks, (list, tuple)):
            raise UsageError(f"callbacks must be a list of callables taking a StepInfo, got {type(callbacks).__name__}")
        callbacks = tuple(callbacks)
        for callback in callbacks:
            if not callable(callback):
                raise UsageError(f"callbacks must be callables taking a StepInfo, got {type(callback).__name__}")
        if schedule is not None and not callable(schedule):
            raise UsageError(f"schedule must be a function optimizer -> lr scheduler, got {type(schedule).__name__}")
        if log not in ("csv", "tensorboard"):
            raise UsageError(f"log must be 'csv' or 'tensorboard', not {log!r}")
        if log == "tensorboard":
            from ..training.metrics_log import summary_writer_class
            summary_writer_class()  # installed? (one line saying how, before any work)
        if not callable(getattr(tasks, "sample", None)):
            raise UsageError(f"tasks must be a task sampler (an object with sample(tasks) -> TaskBatch), not "
                             f"{type(tasks).__name__}: see bilevel_anil.dataset_tasks and function_tasks")
        if metadata is not None and not isinstance(metadata, dict):
            raise UsageError(f"metadata must be a dict of plain values, got {type(metadata).__name__}")
        require_plain(metadata, "metadata")
        if validation is not None:
            validation = self._check_batch(validation)
        group = distributed.init_from_environment(str(self.device))  # joins torchrun's processes, if any
        with contextlib.ExitStack() as stack:
            if out is None:
                if resume:
                    raise UsageError("⟨resume⟩ needs the folder of the run to continue: pass ⟨out⟩")
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bilevel_anil-")))
            else:
                from ..errors import require_output
                require_output(str(out), flag="out")
                folder = Path(out)
                existing = None if resume else \
                    f"{folder} already holds a run: continue it with ⟨resume⟩, or choose another ⟨out⟩"
                if group.is_main:
                    stack.enter_context(RunFolderLock(folder, existing, shared=True))
                elif existing and (folder / "last.pt").exists():  # the other processes stop as rank 0 does
                    raise UsageError(existing)
            state = None
            if resume and not (folder / "last.pt").exists():
                raise UsageError(f"⟨resume⟩: {folder} holds no last.pt to continue: drop ⟨resume⟩ to start a new "
                                 "run there")
            if resume:
                state = read_run(folder / "last.pt", resume=True)
                self._check_resume(state, folder)
            result = self._train(tasks, steps, meta_batch, folder, validation=validation, val_every=val_every,
                                 time_budget=time_budget, resume_state=state, progress=progress, callbacks=callbacks,
                                 schedule=schedule, tensorboard=log == "tensorboard", run=metadata)
            return result if out is not None else dataclasses.replace(result, out=None)

    def _check_resume(self, saved: RunCheckpoint, folder: Path) -> None:
        now = self.record()
        for key in LearnerRecord.RESUME:
            if getattr(saved.learner, key) != getattr(now, key):
                raise UsageError(f"⟨resume⟩: the run in {folder} was trained with {key} "
                                 f"{getattr(saved.learner, key)!r}, not {getattr(now, key)!r}: build the learner as it "
                                 "was, or start a new ⟨out⟩")

    def _train(self, tasks: TaskSampler, steps: int, meta_batch: int, folder: Path, *,
               validation: Optional[TaskBatch] = None, val_every: Optional[int] = None,
               time_budget: Optional[float] = None, resume_state: Optional[RunCheckpoint] = None,
               progress: Optional[bool] = False, callbacks: Sequence[Callback] = (),
               schedule: Optional[Callable[[torch.optim.Optimizer], Any]] = None, tensorboard: bool = False,
               run: Optional[dict] = None) -> FitResult:
        """``fit``'s training (arguments checked, ``folder`` locked): builds the engine,
        continues from ``resume_state`` (a checked ``last.pt``), runs the training loop, and
        leaves θ at the best validation step. ``run`` goes into the checkpoints."""
        from ..engines import build_engine
        from ..training.loop import LoopSettings, TrainingLoop

        group = distributed.current()
        optimizer = self._optimizer_like()
        settings = LoopSettings(steps, val_every or max(1, steps // 10), folder,
                                higher_is_better=self.learner.loss.higher_is_better, progress=progress,
                                time_budget=time_budget, tensorboard=tensorboard)

        def validate() -> Interval:
            theta = self.learner.meta_params()
            return evaluate(self.test_learner, theta, validation, [self.test_inner_steps],
                            self.inner_lr)[self.test_inner_steps]

        engine = build_engine(self.learner, tasks, meta_batch, self.inner_lr, self.inner_steps, optimizer,
                              device=self.device, scheduler=None if schedule is None else _scheduler(schedule, optimizer),
                              hypergrad=self.hypergrad, inner_batch=self.inner_batch, task_chunk=self.task_chunk,
                              pullback=self.inner_proximal == "pullback", group=group)
        loop = TrainingLoop(engine, settings, None if validation is None else validate,
                            self.record(), run, callbacks)
        engine.upper.optimizer.load_state_dict(self.optimizer.state_dict())  # the state of earlier meta_steps
        start = 0
        if resume_state is not None:
            try:
                start = loop.restore(resume_state)
            except (RuntimeError, KeyError, TypeError, ValueError) as exc:
                raise UsageError(f"⟨resume⟩: {folder / 'last.pt'} does not fit this learner's network or optimiser "
                                 f"({load_failure(exc)}): start a new ⟨out⟩") from None
        self.model.train()
        best = loop.run(start)
        self.optimizer = engine.upper.optimizer
        self._engines.clear()
        self.steps_taken = start + loop.steps_done
        if best is not None:
            self.model.load_state_dict(read_run(folder / "best.pt").model)
        return FitResult(best, loop.steps_done, loop.train_seconds, loop.last_train_loss, folder)

    # --- evaluation and use ------------------------------------------------------------
    def evaluate(self, tasks: TaskBatch, steps: Optional[Sequence[int]] = None) -> dict[int, Interval]:
        """Mean query score over fixed tasks, with its 95% interval, after each number of inner
        steps.

        Args:
            tasks: The tasks (``TaskBatch``).
            steps: The numbers of inner steps to score (default 0 and ``test_inner_steps``).

        Returns:
            A dict from each step count to its ``Interval``, which holds the mean score
            (accuracy, or the loss for regression), its 95% half-width, the median and the
            count of tasks whose inner loop diverged.

        Raises:
            ValueError: On a negative or non-integer step count or a batch the network cannot take.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> scores = learner.evaluate(function_tasks(line, seed=2).sample(50), steps=[0, 5])
            >>> sorted(scores), scores[5].tasks
            ([0, 5], 50)
        """
        tasks = self._check_batch(tasks)
        if steps is not None and (not isinstance(steps, (list, tuple, range)) or not steps):
            raise UsageError(f"steps must be a non-empty list of inner-step counts (e.g. [0, 5]), got {steps!r}")
        for k in steps or ():
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise UsageError(f"steps must be non-negative integers, got {k!r}")
        steps = sorted({0, self.test_inner_steps} if steps is None else set(steps))
        return evaluate(self.test_learner, self.learner.meta_params(), tasks, steps, self.inner_lr)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: Optional[int] = None,
              bn: str = "transductive") -> Adapted:
        """Adapt θ to a support set.

        Args:
            support_x: One task's inputs ``[n, ...]``, or ``[B, n, ...]`` for B tasks at once.
            support_y: Labels ``[n]`` or targets ``[n, out]`` (with a leading ``B`` for B tasks).
            steps: Inner steps (default ``test_inner_steps``).
            bn: ``"transductive"`` or ``"inductive"``: see ``Adapted``.

        Returns:
            An ``Adapted`` network, which predicts query inputs.

        Raises:
            ValueError: On tensors of the wrong shape or type, labels outside the head's classes,
                or an unknown ``bn``.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> sx, sy, qx, qy = line(torch.Generator().manual_seed(1))
            >>> before = nn.functional.mse_loss(learner.adapt(sx, sy, steps=0)(qx), qy)
            >>> after = nn.functional.mse_loss(learner.adapt(sx, sy, steps=20)(qx), qy)
            >>> bool(after < before)
            True
        """
        if bn not in ("transductive", "inductive"):
            raise UsageError(f"bn must be 'transductive' or 'inductive', not {bn!r}")
        if not isinstance(support_x, Tensor) or not isinstance(support_y, Tensor):
            raise UsageError("support_x and support_y must be tensors")
        one_task_dims = 1 if self.learner.loss.classification else 2
        batched = support_y.dim() > one_task_dims
        sx, sy = (support_x, support_y) if batched else (support_x.unsqueeze(0), support_y.unsqueeze(0))
        if sx.shape[:2] != sy.shape[:2]:
            raise UsageError(f"support_x {tuple(support_x.shape)} and support_y {tuple(support_y.shape)} disagree on "
                             "the number of tasks or examples")
        if sy.numel() == 0:
            raise UsageError("the support set is empty: give at least one example")
        self._check_labels(sy, "support")
        if self.learner.loss.classification:
            sy = sy.long()
        steps = self.test_inner_steps if steps is None else steps
        if not isinstance(steps, int) or steps < 0:
            raise UsageError(f"steps must be a non-negative integer, got {steps!r}")
        theta = {n: p.detach() for n, p in self.model.named_parameters()}
        sx, sy = sx.to(self.device), sy.to(self.device)
        # as in evaluation: BatchNorm with running statistics uses them (and leaves them unchanged)
        with torch.no_grad(), eval_mode(self.model):
            fast = self.test_learner.adapt(theta, sx, sy, steps, self.inner_lr)
        return Adapted(self.test_learner, theta, fast, sx, batched, bn)

    # --- files -------------------------------------------------------------------------
    def record(self) -> LearnerRecord:
        """What rebuilds this learner, as its checkpoints store it (``bilevel_anil.training.schema``).

        Returns:
            The ``LearnerRecord``.

        Examples:
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner
            >>> learner = MetaLearner(nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)), "anil", loss="mse")
            >>> record = learner.record()
            >>> record.algorithm, record.head_module, record.arch["name"]
            ('anil', '2', 'custom')
        """
        arch = getattr(self.model, "arch", None)
        if not isinstance(arch, dict):
            arch = {"name": "custom", "class": f"{type(self.model).__module__}.{type(self.model).__qualname__}"}
        head, algo = self.learner.head, self.algorithm
        return LearnerRecord(
            algorithm=algo.name, grad=algo.grad, first_order=algo.first_order, loss=self.learner.loss.name,
            arch=dict(arch), inner_lr=self.inner_lr, inner_steps=self.inner_steps,
            test_inner_steps=self.test_inner_steps, lam=self.learner.lam, test_lam=self.test_learner.lam,
            inner_optimizer=algo.inner_optimizer, inner_proximal=self.inner_proximal,
            hypergrad=dataclasses.asdict(self.hypergrad), head_init=self.learner.head_init, head_module=head.module,
            head_names=list(head.names), adapted_names=list(self.learner.adapted_names),
            frozen=[n for n, p in self.model.named_parameters() if not p.requires_grad],
            bn_mode=getattr(self.model, "bn_mode", None) or ("batch" if _has_batch_norm(self.model) else "none"),
            meta_lr=self.meta_lr, inner_batch=self.inner_batch,
            task_chunk=self.task_chunk)

    def save(self, path: Union[str, Path]) -> None:
        """Write θ and everything needed to go on using it, atomically.

        The network's class is recorded, not pickled: ``load`` rebuilds the package's networks
        and takes the user's module for others. Nothing in the file runs code when it is read.

        Args:
            path: The file to write.

        Raises:
            ValueError: When ``path`` cannot be written (a folder, under a file, not writable).

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> import os, tempfile
            >>> path = os.path.join(tempfile.mkdtemp(), "learner.pt")
            >>> learner.save(path)
            >>> os.path.getsize(path) > 0
            True
        """
        from ..errors import require_output
        require_output(str(path), kind="file", flag="path")
        write_run(path, RunCheckpoint(self.record(), self.steps_taken, self.model.state_dict(),
                                      optimizer=self.optimizer.state_dict()))

    @classmethod
    def load(cls, path: Union[str, Path], model: Optional[nn.Module] = None, *, loss: Any = None,
             device: str = "cpu") -> "MetaLearner":
        """A learner from a file of ``save``, ``fit`` or ``run.py`` (``best.pt``,
        ``last.pt``). Nothing in the file is run.

        Args:
            path: The file.
            model: The network to load the weights into: needed for a network that is not one of
                the package's (the error names its class).
            loss: The loss function, when the learner was trained with one of the user's.
            device: Where to put θ.

        Returns:
            The ``MetaLearner``, with its algorithm, inner loop and head as saved.

        Raises:
            ValueError: One line for a missing, damaged or foreign file, or a ``model`` whose
                parameters do not match the saved ones.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner, function_tasks
            >>> def line(g):  # a task: y = slope * x, 5 support and 5 query points
            ...     x = torch.randn(10, 1, generator=g)
            ...     y = torch.randn(1, generator=g) * x
            ...     return x[:5], y[:5], x[5:], y[5:]
            >>> tasks = function_tasks(line, seed=0)
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.1)
            >>> import os, tempfile
            >>> path = os.path.join(tempfile.mkdtemp(), "learner.pt")
            >>> learner.save(path)
            >>> twin = MetaLearner.load(path, model=nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)))
            >>> twin.algorithm.name, torch.equal(twin.model[0].weight, learner.model[0].weight)
            ('maml', True)
        """
        return cls.from_state(read_run(path), model, loss=loss, device=device, source=str(path))

    @classmethod
    def from_state(cls, saved: RunCheckpoint, model: Optional[nn.Module] = None, *, loss: Any = None,
                   device: str = "cpu", source: str = "the checkpoint") -> "MetaLearner":
        """``load`` of a checkpoint already read (``bilevel_anil.training.schema.read_run``).

        Args:
            saved: The checkpoint.
            model: As in ``load``.
            loss: As in ``load``.
            device: As in ``load``.
            source: The name of the file in errors.

        Returns:
            The ``MetaLearner``.

        Raises:
            ValueError: As ``load``.

        Examples:
            >>> import os, tempfile
            >>> from torch import nn
            >>> from bilevel_anil import MetaLearner
            >>> from bilevel_anil.training.schema import read_run
            >>> net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
            >>> path = os.path.join(tempfile.mkdtemp(), "learner.pt")
            >>> MetaLearner(net, "maml", loss="mse", inner_lr=0.1).save(path)
            >>> MetaLearner.from_state(read_run(path), net).inner_lr
            0.1
        """
        record = saved.learner
        model = network_for(record, model, source)
        for parameter_name, p in model.named_parameters():
            if parameter_name in set(record.frozen):
                p.requires_grad_(False)
        if loss is None and record.loss not in LOSSES:
            raise UsageError(f"{source} was trained with the loss function {record.loss!r}: pass loss= that function")
        try:
            learner = cls(model, record.algorithm, loss=loss or record.loss, device=device, **learner_arguments(record, source))
        except UsageError as exc:
            raise UsageError(f"{source}: the network given does not match the saved learner ({exc.template}): pass an "
                             "instance of the network that was saved") from None
        # after the learner is built: it switches a network's BatchNorm layers to batch statistics
        # (network.py) as it did when the weights were saved
        try:
            model.load_state_dict(saved.model)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{source}: its weights do not fit the {type(model).__name__} given "
                             f"({load_failure(exc)})") from None
        learner.steps_taken = saved.step
        if saved.optimizer is not None:
            try:
                learner.optimizer.load_state_dict(saved.optimizer)
            except (ValueError, KeyError, RuntimeError):
                pass  # a different optimiser (e.g. run.py's Reptile schedule): θ is what matters
        return learner
