"""Any ``nn.Module`` as a meta-learning network: which parameters form its head, and how it
runs over a batch of tasks.

The head is chosen by the user: a module's attribute path (``"classifier"``), the module
itself, or a predicate on parameter names; by default the submodule whose output is the model's.
Which parameters the inner loop adapts follows from that choice (all of them for MAML, the
head's for ANIL), never from how the parameters happen to be named.

Two forwards over task batches ``[B, n, ...]``, with each parameter either shared (its usual
shape) or per task (a leading B dimension):

* ``GenericForward`` serves any module: ``torch.func.vmap`` over tasks of
  ``functional_call``. When the head is a submodule applied last (checked on the first
  batch), the features entering it are computed once per inner loop for algorithms that adapt
  only the head (ANIL); otherwise every inner step runs the whole module.
* ``BodyHeadForward`` is the package's hand-written fast path (Conv4 and the MLP): it is
  used only where it computes the same thing (the model's ``body_forward``/``head_forward``
  and a head that is exactly its ``head`` module).
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from ..errors import UsageError, first_line

Params = Mapping[str, Tensor]
HeadSpec = Union[None, str, nn.Module, Callable[[str], bool]]


class Head:
    """The parameters of a network's head: ``names`` (empty only where no head is needed:
    MAML on a network without an ``nn.Linear``), and ``module`` (its path in the network)
    when the head is one submodule."""

    def __init__(self, names: list[str], module: Optional[str]):
        self.names = names
        self.module = module
        self._set = set(names)

    def __contains__(self, name: str) -> bool:
        return name in self._set


def _module_params(model: nn.Module, path: str) -> list[str]:
    prefix = f"{path}." if path else ""
    return [n for n, _ in model.named_parameters() if n.startswith(prefix)]


# tried in turn, smallest first, for a network that starts with a convolution (a flattening
# layer before a Linear fits one size only)
_IMAGE_SIZES = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 84, 96, 112, 128, 160, 224)


def _blank_inputs(module: nn.Module) -> list[Tensor]:
    """Inputs of two examples that a network whose first layer is ``module`` can take (on its
    parameters' device, in their dtype)."""
    like = next(module.parameters())

    def zeros(*shape: int) -> Tensor:
        return torch.zeros(*shape, device=like.device, dtype=like.dtype)

    if isinstance(module, nn.Linear):
        return [zeros(2, module.in_features)]
    if isinstance(module, nn.modules.conv._ConvNd):
        return [zeros(2, module.in_channels, *[size] * len(module.kernel_size)) for size in _IMAGE_SIZES]
    if isinstance(module, nn.Embedding):
        return [torch.zeros(2, 4, dtype=torch.long, device=like.device)]
    if isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
        shape = (module.num_features,) if isinstance(module, nn.BatchNorm1d) else tuple(module.normalized_shape)
        return [zeros(2, *shape)]
    return []


def output_module(model: nn.Module) -> Optional[str]:
    """The path of the layer (a submodule holding parameters itself) whose output *is* the
    network's output, found by running the network once, without gradients and in evaluation mode, on
    blank inputs shaped for one of its layers (each parameterised layer is tried as the first,
    in registration order). None when no input fits or no submodule's output is returned as
    it is (a tuple output, an output computed after the last module).

    Example::

        >>> from torch import nn
        >>> class Net(nn.Module):  # the classifier is registered before the trunk
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.classifier = nn.Linear(8, 3)
        ...         self.trunk = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        ...     def forward(self, x):
        ...         return self.classifier(self.trunk(x))
        >>> output_module(Net())
        'classifier'
    """
    parameterised = [m for _, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if not parameterised:
        return None
    paths = {id(m): name for name, m in model.named_modules()}
    seen: list[tuple[str, object]] = []
    # a layer that holds parameters itself (a container's output is its last layer's anyway)
    hooks = [m.register_forward_hook(lambda module, args, output: seen.append((paths[id(module)], output)))
             for m in parameterised if paths[id(m)]]
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        for first in parameterised:
            for x in _blank_inputs(first):
                seen.clear()
                try:
                    with torch.no_grad():
                        out = model(x)
                except Exception:  # this layer is not the first one, or the size does not fit
                    continue
                matches = [name for name, output in seen if output is out] if isinstance(out, Tensor) else []
                return max(matches, key=lambda name: name.count(".")) if matches else None
        return None
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in modes.items():
            m.train(mode)


def resolve_head(model: nn.Module, head: HeadSpec = None, *, required: bool = True) -> Head:
    """The head of ``model`` given by ``head`` (see the module docstring), checked: it exists
    and has parameters (it may hold them all: ANIL is then MAML). By default the submodule whose
    output is the network's (``output_module``); when that cannot be told, no head if it is not
    ``required`` (MAML), else one ``UsageError`` line, as for every other failed check.

    Example::

        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> resolve_head(net).names
        ['2.weight', '2.bias']
        >>> resolve_head(net, lambda name: name.startswith("0.")).module is None
        True
    """
    kind = type(model).__name__
    names = [n for n, _ in model.named_parameters()]
    if not names:
        raise UsageError(f"{kind} has no parameters to meta-train")
    if head is None:
        path = output_module(model)
        if path is None and not required:
            return Head([], None)
        if path is None:
            raise UsageError(f"cannot tell which part of {kind} is its head (no submodule's output is the network's "
                             "output on a blank input): name it with head='<submodule>', a module, or a predicate on "
                             "parameter names")
        module: Optional[str] = path
        chosen = _module_params(model, path)
    elif isinstance(head, str):
        modules = dict(model.named_modules())
        if head not in modules or head == "":
            children = ", ".join(n for n, _ in model.named_children()) or "none"
            raise UsageError(f"head={head!r}: {kind} has no such submodule (its children: {children})")
        module, chosen = head, _module_params(model, head)
    elif isinstance(head, nn.Module):
        paths = [n for n, m in model.named_modules() if m is head]
        if not paths or paths[0] == "":
            raise UsageError(f"the head module given ({type(head).__name__}) is not a submodule of {kind}")
        module, chosen = paths[0], _module_params(model, paths[0])
    elif callable(head):
        module, chosen = None, [n for n in names if head(n)]
    else:
        raise UsageError(f"head must be a submodule's name, a module or a predicate on parameter names, "
                         f"not {type(head).__name__}")
    if not chosen:
        raise UsageError(f"the head of {kind} ({module or 'the predicate'}) has no parameters: choose a part "
                         "that has some")
    return Head(chosen, module)


def split_task_params(params: Params, dims: Mapping[str, int], prefix: str = "") -> tuple[dict, dict]:
    """The tensors of ``params`` named ``prefix…`` (by their names without the prefix), split
    into those shared by all tasks (their usual number of dimensions, ``dims``) and those per
    task (one more: a leading task dimension)."""
    shared, per_task = {}, {}
    for name, p in params.items():
        if name.startswith(prefix):
            local = name[len(prefix):]
            (per_task if p.dim() > dims[local] else shared)[local] = p
    return shared, per_task


class GenericForward:
    """Any module run per task with ``vmap(functional_call)``.

    ``features(params, x)`` are what ``outputs`` continues from: the input of the head
    module when the head is a submodule applied once and last (then ANIL's inner steps run the
    head only), else ``x`` itself. Randomness (dropout) differs between tasks.
    """

    def __init__(self, model: nn.Module, head: Head):
        # BatchNorm layers that keep running statistics would update them in place inside
        # vmap: like the package's own networks, each task's set is normalised with its own
        # statistics instead (transductive, as in the MAML reference)
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules()):
            replace_all_batch_norm_modules_(model)
        self.model = model
        self.head_path = head.module
        self.dims = {n: p.dim() for n, p in model.named_parameters()}
        self._head_last: Optional[bool] = None if head.module is not None else False
        self._checked = False

    @property
    def reuses_features(self) -> bool:
        """Whether ``features`` stops at the head's input (known after the first batch)."""
        return bool(self._head_last)

    def _per_task(self, fn: Callable, params: Params, x: Tensor) -> Tensor:
        shared, per_task = split_task_params(params, self.dims)

        def one_task(task_params: dict[str, Tensor], inputs: Tensor) -> Tensor:
            return fn({**shared, **task_params}, inputs)

        run = vmap(one_task, randomness="different")
        if self._checked:
            return run(per_task, x)
        try:
            out = run(per_task, x)
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
            raise UsageError(f"{type(self.model).__name__} failed on the first batch, run one task at a time under "
                             f"torch.func.vmap ({first_line(exc, 300)}): check that the inputs [B, n, ...] fit the network and "
                             "that its forward takes one task's inputs [n, ...] without in-place updates of buffers"
                             ) from None
        self._checked = True
        return out

    def _check_head_last(self, params: Params, x: Tensor) -> bool:
        """Run one task eagerly: is the head called once, and is its output the model's?"""
        head = self.model.get_submodule(self.head_path)
        seen: list[Tensor] = []
        handle = head.register_forward_hook(lambda module, args, output: seen.append(output))
        one = {n: (p[0] if p.dim() > self.dims[n] else p) for n, p in params.items()}
        try:
            with torch.no_grad():
                out = functional_call(self.model, one, (x[0],))
        except Exception:
            return False  # the vmapped call reports what is wrong with the module
        finally:
            handle.remove()
        return len(seen) == 1 and out is seen[0]

    def full(self, params: Params, x: Tensor) -> Tensor:
        """Outputs ``[B, n, ...]`` of the whole module."""
        return self._per_task(lambda p, inputs: functional_call(self.model, p, (inputs,)), params, x)

    def features(self, params: Params, x: Tensor) -> Tensor:
        if self._head_last is None:
            self._head_last = self._check_head_last(params, x)
        if not self._head_last:
            return x
        head = self.model.get_submodule(self.head_path)

        def head_input(p: dict[str, Tensor], inputs: Tensor) -> Tensor:
            seen: list[Tensor] = []
            handle = head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
            try:
                functional_call(self.model, p, (inputs,))
            finally:
                handle.remove()
            return seen[0]

        return self._per_task(head_input, params, x)

    def outputs(self, params: Params, features: Tensor) -> Tensor:
        if not self._head_last:
            return self.full(params, features)
        prefix = self.head_path + "."
        head = self.model.get_submodule(self.head_path)
        dims = {n[len(prefix):]: d for n, d in self.dims.items() if n.startswith(prefix)}
        shared, per_task = split_task_params(params, dims, prefix)

        def one_task(task_params: dict[str, Tensor], inputs: Tensor) -> Tensor:
            return functional_call(head, {**shared, **task_params}, (inputs,))

        return vmap(one_task, randomness="different")(per_task, features)


class BodyHeadForward:
    """The package's hand-written task-batched forward (``body_forward``/``head_forward``)."""

    reuses_features = True

    def __init__(self, model: nn.Module):
        self.model = model

    def features(self, params: Params, x: Tensor) -> Tensor:
        return self.model.body_forward(params, x)

    def outputs(self, params: Params, features: Tensor) -> Tensor:
        return self.model.head_forward(params, features)


def has_fast_path(model: nn.Module, head: Head) -> bool:
    """Whether the model's own ``body_forward``/``head_forward`` compute this split: they
    exist, and the head is exactly the ``head`` module with every other parameter in ``body``."""
    if not all(callable(getattr(model, m, None)) for m in ("body_forward", "head_forward")):
        return False
    names = [n for n, _ in model.named_parameters()]
    return (head.module == "head" and all(n.startswith(("body.", "head.")) for n in names))


def task_forward(model: nn.Module, head: Head):
    """The forward the learner uses: the fast path where it applies, else the generic one."""
    return BodyHeadForward(model) if has_fast_path(model, head) else GenericForward(model, head)
