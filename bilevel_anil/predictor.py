"""Use a trained checkpoint from Python: ``model = bilevel_anil.load(path)``."""
from __future__ import annotations

import os
from typing import Optional

import torch
from PIL import Image
from torch import Tensor

from . import checkpoint
from .algorithms import get_algorithm
from .data.registry import DATASETS
from .errors import UsageError, load_failure
from .learner import Learner
from .models import build_model


class FewShotModel:
    """A meta-trained initialisation with its inner loop, ready to adapt to a new task.

    Attributes: ``ways`` (classes per task), ``inner_steps`` and ``inner_lr`` (the adaptation
    used at test time), ``algorithm`` and ``bn_mode`` (how BatchNorm normalises).
    """

    def __init__(self, state: dict, device: str = "cpu"):
        try:
            self.model = build_model(state["arch"]).to(device)
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"the checkpoint's weights do not fit its network {state['arch'].get('name')!r}: "
                             f"{load_failure(exc)}") from None
        self.model.eval()
        self.learner = Learner(self.model, get_algorithm(state["algorithm"], inner_optimizer=state.get("inner_optimizer")), state["loss"],
                               state.get("lam", 0.0))
        self.ways = state["arch"].get("ways")
        self.inner_steps = int(state["test_inner_steps"])
        self.inner_lr = float(state["inner_lr"])
        self.image_size = state["arch"].get("image_size")
        self.bn_mode = state.get("bn_mode", "batch")
        self.algorithm = state["algorithm"]
        self.dataset = state.get("config", {}).get("dataset", "omniglot")
        self.device = device
        self.state = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng")}

    def transform(self, image: Image.Image) -> Tensor:
        """A PIL image to the model's input ``[C, S, S]`` (the training preprocessing of its data
        set: grey and inverted for Omniglot; RGB, normalised per channel for the natural-image
        benchmarks; the folder data set's channels and its training split's statistics)."""
        spec = DATASETS.get(self.dataset)
        if self.image_size is None or spec is None or spec.to_input is None:
            raise UsageError("this model does not take images")
        return spec.to_input(self.state, image)

    def adapt_and_predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                          steps: Optional[int] = None) -> Tensor:
        """Adapt on one task's support set and return query outputs.

        support_x ``[n, ...]``, support_y ``[n]`` with labels 0..N-1 (N ≤ ``ways``), query_x
        ``[m, ...]``; returns logits ``[m, ways]`` (or predictions ``[m, out]`` for regression).
        ``steps`` defaults to the inner steps the model was evaluated with.
        """
        if support_x.shape[0] != support_y.shape[0]:
            raise UsageError(f"support_x has {support_x.shape[0]} examples but support_y {support_y.shape[0]} labels")
        if self.learner.loss.classification:
            if support_y.dtype not in (torch.int64, torch.int32) or support_y.min() < 0 or support_y.max() >= self.ways:
                raise UsageError(f"support labels must be integers 0..{self.ways - 1}")
            support_y = support_y.long()
        if support_x.shape[1:] != query_x.shape[1:]:
            raise UsageError(f"support and query inputs differ in shape: {tuple(support_x.shape[1:])} vs {tuple(query_x.shape[1:])}")
        theta = {n: p.detach() for n, p in self.model.named_parameters()}
        sx, sy, qx = (t.unsqueeze(0).to(self.device) for t in (support_x, support_y, query_x))
        with torch.no_grad():
            fast = self.learner.adapt(theta, sx, sy, self.inner_steps if steps is None else steps, self.inner_lr)
            return self.learner.predictor(theta, qx)(fast)[0]


def load(path: str | os.PathLike, device: str = "cpu") -> FewShotModel:
    """Load a ``best.pt`` or ``last.pt`` written by ``run.py``.

    Nothing in the file is run (``torch.load(weights_only=True)``); a file that is not a
    complete run checkpoint raises ``ValueError`` with a one-line message."""
    return FewShotModel(checkpoint.load_run(path), device)
