"""A working unrolled (iterative) lower problem for Betty.

betty-ml 0.2.1 ships an ``IterativeProblem`` that fails on current torch. This one keeps
the lower problem's parameters as *fast weights*: tensors derived from the upper problem's
parameters (at ``on_inner_loop_start``) and replaced by new tensors at every SGD step, so the
autograd graph runs through every inner step. The upper problem then gets the exact
unrolled meta-gradient from its ordinary backward pass, with ``Config(first_order=False)``
(which in Betty turns *off* the implicit best-response approximations).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from betty.configs import Config
from betty.problems import Problem
from torch import Tensor, nn

from ..core.fast_weights import inner_optimizer


class IterativeProblem(Problem):
    """Lower problem whose parameters are functional fast weights updated by a functional
    optimiser (plain SGD unless ``optimizer="adam"``).

    Subclasses write ``training_step`` and ``get_batch`` as for any Betty problem, and call
    ``reset`` (typically in ``on_inner_loop_start``) with the starting fast weights.

    lr: inner-loop step size; optimizer: ``"sgd"`` or ``"adam"`` (β1 = 0, fresh state per inner loop).
    first_order: when True the inner gradients are not differentiated (no second-order
        terms); the meta-gradient is then the first-order approximation.
    """

    def __init__(self, name: str, config: Config, module: nn.Module, lr: float, first_order: bool = False,
                 optimizer: str = "sgd"):
        if config.gradient_accumulation != 1:
            raise ValueError("IterativeProblem takes one gradient per inner step: use gradient_accumulation=1")
        super().__init__(name, config, module=module, optimizer=None)
        self.update = inner_optimizer(optimizer, lr)
        self.inner_first_order = first_order
        self.fast_params: dict[str, Tensor] = {}
        self._grads: Optional[Sequence[Optional[Tensor]]] = None
        self._cached: dict[str, Tensor] = {}

    def initialize(self) -> None:
        super().initialize()
        for parent in self._parents:
            if parent.config.first_order:
                raise ValueError(
                    f"problem {parent.name!r} is above an IterativeProblem: give it Config(first_order=False) "
                    "so Betty does not add an implicit hypergradient on top of the unrolled one")
        # Betty derives "first order" from the parents' configs; here it is this problem's choice.
        self._first_order = self.inner_first_order

    def reset(self, params: Mapping[str, Tensor]) -> None:
        """Start a new inner loop from ``params`` (kept in the graph of whatever made them)."""
        self.fast_params = dict(params)
        self._grads = None
        self.update.reset()

    def release(self) -> None:
        """Drop the fast weights (and with them the graph of the finished inner loop)."""
        self.reset({})

    # Betty's parameter interface -----------------------------------------------------------
    def parameters(self) -> list[Tensor]:
        return list(self.fast_params.values())

    def trainable_parameters(self) -> list[Tensor]:
        return list(self.fast_params.values())

    def patch_optimizer(self) -> None:
        """No torch optimizer: the update is the functional SGD step of ``optimizer_step``."""

    def backward(self, loss: Tensor, params, paths, create_graph=False, retain_graph=True, allow_unused=True) -> None:
        # torch.autograd.grad instead of Betty's autograd.backward(create_graph=True), which
        # stores graph-carrying .grad attributes and leaks through reference cycles.
        self._grads = torch.autograd.grad(
            loss, params, create_graph=create_graph,
            retain_graph=retain_graph or create_graph, allow_unused=allow_unused)

    def optimizer_step(self, *args, **kwargs) -> None:
        if self._grads is not None:
            self.fast_params = self.update.step(self.fast_params, self._grads)

    def zero_grad(self) -> None:
        self._grads = None

    # roll-back support (Betty's warm start) -----------------------------------------------
    def cache_states(self) -> None:
        self._cached = dict(self.fast_params)

    def recover_states(self) -> None:
        self.fast_params = dict(self._cached)

    def state_dict(self) -> dict:
        """Fast weights are transient (rebuilt every outer step): nothing to save."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        return None
