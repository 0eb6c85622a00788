"""A learner: a network, the algorithm's choice of adapted parameters, and a loss.

Both the Betty problems and evaluation go through this one definition of prediction,
task loss and inner-loop adaptation.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from .algorithms import Algorithm
from ..errors import UsageError
from .fast_weights import inner_optimizer
from .losses import TaskLoss, resolve_loss
from .options import HEAD_INITS
from .network import BodyHeadForward, HeadSpec, resolve_head, task_forward

Params = Mapping[str, Tensor]
Predictor = Callable[[Params], Tensor]


def prototype_head(features: Tensor, labels: Tensor, ways: int) -> tuple[Tensor, Tensor]:
    """Proto-MAML's linear head for each task (Triantafillou et al. 2020): with μ_c the mean
    support feature of class c, ``w_c = 2·μ_c`` and ``b_c = −‖μ_c‖²``, so that the logits
    ``w_c·f + b_c = ‖f‖² − ‖f − μ_c‖²`` rank the classes as the nearest prototype does. It is
    differentiable in ``features``. A class absent from a task's support set gets a zero row.

    features: ``[B, n, D]``; labels: ``[B, n]`` in ``0 .. ways-1``. Returns the weight
    ``[B, ways, D]`` and the bias ``[B, ways]``.

    Example::

        >>> import torch
        >>> f = torch.tensor([[[0., 0.], [2., 0.], [0., 4.]]])
        >>> w, b = prototype_head(f, torch.tensor([[0, 0, 1]]), ways=2)
        >>> w, b
        (tensor([[[2., 0.],
                 [0., 8.]]]), tensor([[ -1., -16.]]))
        >>> (torch.tensor([0., 3.]) @ w[0].T + b[0]).argmax().item()  # nearer the second prototype
        1
    """
    onehot = torch.nn.functional.one_hot(labels, ways).to(features.dtype)  # [B, n, ways]
    counts = onehot.sum(dim=1).clamp_min(1.0)  # [B, ways]
    means = onehot.transpose(1, 2) @ features / counts.unsqueeze(-1)  # [B, ways, D]
    return 2.0 * means, -means.pow(2).sum(dim=-1)


def check_head_init(head_init: str, algorithm: Algorithm, classification: bool, *, label: str, fix: str,
                    data: str) -> None:
    """The ``head_init`` rules that need no network, one ``UsageError`` line each; shared
    by ``Learner`` and ``run.py``'s flag check. ``label`` names the choice as the user made
    it (``"head_init='zero'"``, ``"--head-init zero"``), ``fix`` says what to do instead,
    ``data`` what the tasks are (for the classification rule)."""
    if head_init not in HEAD_INITS:
        raise UsageError(f"unknown {label}: choose one of {', '.join(HEAD_INITS)}")
    if head_init == "learned":
        return
    if algorithm.update != "gradient":
        raise UsageError(f"{label} does not fit {algorithm.name}: its update moves θ towards the adapted weights, "
                         f"which needs a learned head; {fix}")
    if algorithm.pretrain and head_init == "zero":
        raise UsageError(f"{label} does not fit {algorithm.name}: it does not adapt in meta-training, so its loss "
                         f"would see only a zero head; {fix}")
    if head_init == "prototypes" and not classification:
        raise UsageError(f"{label} needs classes to form prototypes, and {data}; {fix}")


class Learner:
    """Binds any network to an algorithm and a loss: what the inner loop adapts, the task
    loss, prediction over task batches, and adaptation.

    head: which part of ``model`` is its head (see ``bilevel_anil.core.network.resolve_head``:
    a submodule's name, the module, or a predicate on parameter names; default the submodule
    whose output is the network's, ``bilevel_anil.core.network.output_module``). ANIL-type
    algorithms adapt the head; MAML-type algorithms adapt every parameter (the head then only
    lets the body's features be reused).
    adapt: a predicate on parameter names that replaces the algorithm's choice of adapted
    parameters (e.g. the head and the last block).
    loss: ``"cross_entropy"`` (classification, labels ``[B, n]``), ``"mse"`` (regression,
    targets ``[B, n, out]``), or a function of one task's outputs and targets (see
    ``bilevel_anil.core.losses``).
    lam: strength λ of the proximal term ``(λ/2)·‖φ − θ‖²`` of the inner objective, per task
    (the iMAML paper's definition); used only when the algorithm is proximal (0 is allowed for
    test-time adaptation; meta-training needs λ > 0).
    head_init: where each task's inner loop starts the head (default: the algorithm's):
    ``"learned"`` (the meta-learned head, as MAML and ANIL do), ``"zero"`` (a zero head for every task), or ``"prototypes"``
    (``prototype_head`` of the support features at θ, differentiably, so the meta-gradient
    reaches the body through it: Proto-MAML). The last two need an algorithm that adapts the
    head; ``"prototypes"`` needs classification and a head that is one ``nn.Linear`` with a
    bias. With a proximal algorithm the proximal term anchors the head at its starting point.

    The split is checked here, in one line each: the head exists and has parameters, and an
    algorithm that adapts the head is given one.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from bilevel_anil.core.options import get_algorithm
        >>> net = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
        >>> learner = Learner(net, get_algorithm("anil"), "mse")
        >>> learner.adapted_names
        ['2.weight', '2.bias']
    """

    def __init__(self, model: nn.Module, algorithm: Algorithm, loss: Union[str, Callable, TaskLoss] = "cross_entropy",
                 lam: float = 0.0, head: HeadSpec = None, adapt: Optional[Callable[[str], bool]] = None,
                 head_init: Optional[str] = None):
        if algorithm.proximal and not lam >= 0:
            raise UsageError(f"{algorithm.name} needs a proximal strength lam >= 0, got {lam}")
        if not isinstance(model, nn.Module):
            raise UsageError(f"the model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.algorithm = algorithm
        self.loss = resolve_loss(loss)
        self.lam = lam if algorithm.proximal else 0.0
        names = [n for n, _ in model.named_parameters()]
        # MAML needs no head (it only lets an inner step reuse the body's features); ANIL does
        needed = head is not None or algorithm.adapt != "all" or adapt is not None or \
            (head_init or algorithm.head_init) != "learned"
        self.head = resolve_head(model, head, required=needed)
        if adapt is not None:
            self.adapted_names = [n for n in names if adapt(n)]
            if not self.adapted_names:
                raise UsageError(f"adapt= selects none of the parameters of {type(model).__name__}")
        elif algorithm.adapt == "all":
            self.adapted_names = names
        else:
            self.adapted_names = list(self.head.names)
        self.adapts_body = any(n not in self.head for n in self.adapted_names)
        self.forward = task_forward(model, self.head)
        self.head_init = head_init or algorithm.head_init
        self._check_head_init()

    def _check_head_init(self) -> None:
        what = f"head_init={self.head_init!r}"
        check_head_init(self.head_init, self.algorithm, self.loss.classification, label=what,
                        fix="use head_init='learned'", data=f"the loss is {self.loss.name}")
        if self.head_init == "learned":
            return
        if not self.head.names or not all(n in self.adapted_names for n in self.head.names):
            raise UsageError(f"{what} needs an inner loop that adapts the head; {self.algorithm.name} "
                             "with these parameters does not: use head_init='learned'")
        if self.head_init == "prototypes":
            linear = self.model.get_submodule(self.head.module) if self.head.module is not None else None
            if not isinstance(linear, nn.Linear) or linear.bias is None:
                raise UsageError(f"{what} needs a head that is one nn.Linear with a bias; "
                                 f"{type(self.model).__name__}'s head is not")

    @property
    def fast_path(self) -> bool:
        """Whether the network's own hand-written task-batched forward is used."""
        return isinstance(self.forward, BodyHeadForward)

    def with_lam(self, lam: float) -> "Learner":
        """The same learner with proximal strength ``lam`` (e.g. λ = 0 for test-time adaptation)."""
        other = copy.copy(self)
        other.lam = lam if self.algorithm.proximal else 0.0
        return other

    def meta_params(self) -> dict[str, Tensor]:
        """The meta-parameters (the initialisation) by name."""
        return dict(self.model.named_parameters())

    def initial_fast_params(self, theta: Params, x: Tensor, y: Tensor,
                            features: Optional[Tensor] = None) -> dict[str, Tensor]:
        """Each task's starting point ``[B, ...]`` of the adapted parameters, differentiable in
        theta: copies of the meta-parameters, with the head set as ``head_init`` says from the
        support set ``(x, y)`` (``features``: the support features at theta, when computed)."""
        tasks = x.shape[0]
        fast = {n: theta[n].unsqueeze(0).expand(tasks, *theta[n].shape) for n in self.adapted_names}
        if self.head_init == "zero":
            # a leaf of its own, so that the inner loop can differentiate the support loss in it
            fast.update({n: theta[n].new_zeros((tasks, *theta[n].shape)).requires_grad_(theta[n].requires_grad)
                         for n in self.head.names})
        elif self.head_init == "prototypes":
            if features is None:
                features = self.forward.features(theta, x)
            if not self.forward.reuses_features:
                raise UsageError(f"head_init='prototypes' needs the input of {type(self.model).__name__}'s head, "
                                 "but its head is not the last module its forward calls")
            ways = self.model.get_submodule(self.head.module).out_features
            weight, bias = prototype_head(features, y, ways)
            fast[f"{self.head.module}.weight"], fast[f"{self.head.module}.bias"] = weight, bias
        return fast

    def anchor(self, theta: Params, start: Params) -> Params:
        """The proximal term's anchor: θ, with the head at its starting point ``start`` when
        ``head_init`` sets the head (a zero or prototype head is no meta-parameter)."""
        if self.head_init == "learned":
            return theta
        return {**theta, **{n: start[n] for n in self.head.names}}

    def predictor(self, theta: Params, x: Tensor) -> Predictor:
        """Return ``fast -> outputs [B, n, out]`` for inputs ``x`` of shape ``[B, n, ...]``.

        When the body is not adapted (ANIL) its features are computed here once and reused by
        every call, so inner steps only run the head.
        """
        forward = self.forward
        if not self.adapts_body:
            features = forward.features(theta, x)

            def predict(fast: Params) -> Tensor:
                return forward.outputs({**theta, **fast}, features)
            predict.features = features  # the inputs' features at theta (e.g. for a prototype head)
            return predict
        return lambda fast: forward.outputs({**theta, **fast}, forward.features({**theta, **fast}, x))

    def task_losses(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean loss of each task ``[B]``."""
        return self.loss.per_task(outputs, targets)

    def task_scores(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Score of each task ``[B]``: accuracy for classification, else the loss."""
        return self.loss.score(outputs, targets)

    def inner_loss(self, predict: Predictor, fast: Params, targets: Tensor, theta: Params,
                   proximal: bool = True) -> Tensor:
        """The inner objective summed over tasks: each task's mean support loss, plus
        ``(λ/2)·‖φ_b − θ‖²`` for proximal algorithms (unless ``proximal`` is False; ``theta``:
        the anchor, see ``anchor``). Its gradient with respect to per-task fast weights
        ``φ_b`` is each task's own gradient."""
        loss = self.task_losses(predict(fast), targets).sum()
        if self.lam and proximal:
            loss = loss + 0.5 * self.lam * sum((p - theta[n]).pow(2).sum() for n, p in fast.items())
        return loss

    def adapt_path(self, theta: Params, x: Tensor, y: Tensor, steps: int, lr: float) -> Iterator[dict[str, Tensor]]:
        """Yield the fast weights after 0, 1, ..., ``steps`` steps of the algorithm's inner
        optimiser on the support set ``(x, y)``, detached from theta (for evaluation and prediction)."""
        theta = {n: p.detach() for n, p in theta.items()}
        predict = self.predictor(theta, x)
        start = self.initial_fast_params(theta, x, y, getattr(predict, "features", None))
        start = {n: p.detach().clone() for n, p in start.items()}
        anchor = self.anchor(theta, start)
        fast = {n: p.clone() for n, p in start.items()}
        update = inner_optimizer(self.algorithm.inner_optimizer, lr)
        yield fast
        for _ in range(steps):
            with torch.enable_grad():
                fast = {n: p.requires_grad_() for n, p in fast.items()}
                grads = torch.autograd.grad(self.inner_loss(predict, fast, y, anchor), list(fast.values()))
            fast = {n: p.detach() for n, p in update.step(fast, grads).items()}
            yield fast

    def adapt(self, theta: Params, x: Tensor, y: Tensor, steps: int, lr: float) -> dict[str, Tensor]:
        """Fast weights after ``steps`` inner steps on the support set (no meta-graph)."""
        for fast in self.adapt_path(theta, x, y, steps, lr):
            pass
        return fast
