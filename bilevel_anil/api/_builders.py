"""The parts of a ``MetaLearner`` built from its arguments or rebuilt from a checkpoint: the
outer optimiser, the network of a saved learner, and the arguments that rebuild it."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..core.algorithms import ALGORITHMS, Algorithm
from ..core.options import HEAD_INITS
from ..core.solvers import HypergradConfig
from ..errors import UsageError, first_line
from ..training.schema import LearnerRecord


def outer_optimizer(spec: Any, params: list[Tensor], model: nn.Module, algorithm: Algorithm,
                    meta_lr: float) -> torch.optim.Optimizer:
    """``MetaLearner``'s outer optimiser from its ``meta_optimizer`` argument: default Adam (SGD
    for Reptile) at ``meta_lr``; a torch optimizer (its class and settings), its class, or a
    function ``params -> optimizer``."""
    if not params:
        raise UsageError(f"{type(model).__name__} has no parameter that requires a gradient: nothing to meta-train")
    if spec is None:
        if algorithm.update == "interpolate":
            return torch.optim.SGD(params, lr=meta_lr)
        return torch.optim.Adam(params, lr=meta_lr)
    if isinstance(spec, torch.optim.Optimizer):  # Betty rebuilds it: same class and settings
        return type(spec)(params, **spec.defaults)
    if isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        return spec(params, lr=meta_lr)
    if callable(spec):
        made = spec(params)
        if not isinstance(made, torch.optim.Optimizer):
            raise UsageError(f"meta_optimizer(params) returned {type(made).__name__}, not a torch optimizer")
        return made
    raise UsageError("meta_optimizer must be a torch optimizer, its class, or a function params -> optimizer")


def network_for(record: LearnerRecord, model: Optional[nn.Module], source: str) -> nn.Module:
    """The network to load a checkpoint's weights into: the user's, or the package's rebuilt."""
    from ..models import build_model

    if model is not None:
        return model
    if record.arch.get("name") == "custom":
        raise UsageError(f"{source} holds a network of the user's ({record.arch.get('class')}): pass model= an "
                         "instance of it to load the weights into")
    try:
        return build_model(record.arch)
    except ValueError as exc:  # e.g. a body registered in the process that trained it
        raise UsageError(f"{source}: {first_line(exc)}") from None


def learner_arguments(record: LearnerRecord, source: str) -> dict[str, Any]:
    """``MetaLearner``'s arguments that rebuild a saved learner: the settings of its algorithm
    only (the others would be refused, not ignored)."""
    if record.algorithm not in ALGORITHMS:
        raise UsageError(f"{source} names an unknown algorithm {record.algorithm!r}: it was not written by this "
                         "package")
    if record.head_init not in HEAD_INITS:
        raise UsageError(f"{source} names an unknown head_init {record.head_init!r}: it was not written by this "
                         "package")
    family = ALGORITHMS[record.algorithm]
    grad = None if family.update == "interpolate" or family.pretrain else \
        "first_order" if record.first_order and not family.first_order else record.grad  # no choice for the first
    head_names, adapted = frozenset(record.head_names), record.adapted_names
    proximal = family.proximal
    return {
        "head": record.head_module or ((lambda n: n in head_names) if head_names else None),
        "adapt": None if adapted is None else (lambda n, keep=frozenset(adapted): n in keep), "grad": grad,
        "inner_lr": record.inner_lr, "inner_steps": record.inner_steps, "test_inner_steps": record.test_inner_steps,
        "lam": record.lam if proximal else None, "test_lam": record.test_lam if proximal else None,
        "hypergrad": HypergradConfig(**record.hypergrad) if proximal else None,
        "inner_proximal": record.inner_proximal if proximal else None, "meta_lr": record.meta_lr,
        "inner_batch": record.inner_batch, "inner_optimizer": record.inner_optimizer, "head_init": record.head_init}
