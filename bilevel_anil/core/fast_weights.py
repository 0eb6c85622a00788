"""Functional updates of fast weights: each step returns new tensors, keeping the graph.

The inner loop's optimiser is one of ``INNER_OPTIMIZERS``: plain SGD (MAML, ANIL, iMAML)
or Adam with β1 = 0 (Reptile's inner optimiser). Per-task tensors ``[B, ...]`` get per-task
optimiser state, so B tasks adapt exactly as B separate loops would.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from torch import Tensor

INNER_OPTIMIZERS = ("sgd", "adam")


def sgd_step(params: Mapping[str, Tensor], grads: Sequence[Optional[Tensor]], lr: float) -> dict[str, Tensor]:
    """``p - lr * g`` for each named tensor; a ``None`` gradient leaves the tensor as it is."""
    return {name: p if g is None else p - lr * g for (name, p), g in zip(params.items(), grads)}


class FastSGD:
    """Plain gradient descent with step size ``lr``."""

    def __init__(self, lr: float):
        self.lr = lr

    def reset(self) -> None:
        """Start a new inner loop (SGD has no state)."""

    def step(self, params: Mapping[str, Tensor], grads: Sequence[Optional[Tensor]]) -> dict[str, Tensor]:
        return sgd_step(params, grads, self.lr)


class FastAdam:
    """Adam (Kingma and Ba) on fast weights: ``p - lr · m̂ / (√v̂ + eps)`` with bias-corrected
    moments; ``beta1 = 0`` (the Reptile paper's inner optimiser) keeps no first moment."""

    def __init__(self, lr: float, beta1: float = 0.0, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.reset()

    def reset(self) -> None:
        """Start a new inner loop: zero moments, step count 0."""
        self.t = 0
        self.m: dict[str, Tensor] = {}
        self.v: dict[str, Tensor] = {}

    def step(self, params: Mapping[str, Tensor], grads: Sequence[Optional[Tensor]]) -> dict[str, Tensor]:
        self.t += 1
        out = {}
        for (name, p), g in zip(params.items(), grads):
            if g is None:
                out[name] = p
                continue
            m = g if self.beta1 == 0 else self.beta1 * self.m.get(name, 0.0) + (1 - self.beta1) * g
            v = self.beta2 * self.v.get(name, 0.0) + (1 - self.beta2) * g * g
            self.m[name], self.v[name] = m, v
            m_hat = m / (1 - self.beta1 ** self.t)
            v_hat = v / (1 - self.beta2 ** self.t)
            out[name] = p - self.lr * m_hat / (v_hat.sqrt() + self.eps)
        return out


def inner_optimizer(name: str, lr: float):
    """The fast-weight optimiser called ``name`` (one of ``INNER_OPTIMIZERS``)."""
    if name == "sgd":
        return FastSGD(lr)
    if name == "adam":
        return FastAdam(lr)
    raise ValueError(f"unknown inner optimizer {name!r}: choose one of {', '.join(INNER_OPTIMIZERS)}")
