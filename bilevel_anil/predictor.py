"""Use a trained checkpoint from Python: ``model = bilevel_anil.load(path)``."""
from __future__ import annotations

import os
from typing import Any, Optional

from PIL import Image
from torch import Tensor, nn

from . import checkpoint
from .data.registry import DATASETS
from .errors import UsageError


class FewShotModel:
    """A meta-trained initialisation with its inner loop, ready to adapt to a new task: a
    :class:`~bilevel_anil.MetaLearner` loaded from a checkpoint (``meta``), plus the input
    transform of the data set it was trained on.

    Attributes: ``ways`` (classes per task), ``inner_steps`` and ``inner_lr`` (the adaptation
    used at test time), ``algorithm`` and ``bn_mode`` (how BatchNorm normalises).
    """

    def __init__(self, state: dict, device: str = "cpu", model: Optional[nn.Module] = None, loss: Any = None,
                 source: str = "the checkpoint"):
        from .meta_learner import MetaLearner

        self.meta = MetaLearner.from_state(state, model, loss=loss, device=device, source=source)
        self.model = self.meta.model
        self.model.eval()
        self.learner = self.meta.test_learner
        self.ways = state["arch"].get("ways", self.meta.outputs)
        self.inner_steps = self.meta.test_inner_steps
        self.inner_lr = self.meta.inner_lr
        self.image_size = state["arch"].get("image_size")
        self.bn_mode = state.get("bn_mode", "batch")
        self.algorithm = state["algorithm"]
        self.dataset = state.get("config", {}).get("dataset")
        self.device = device
        self.state = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng")}

    def transform(self, image: Image.Image) -> Tensor:
        """A PIL image to the model's input ``[C, S, S]`` (the training preprocessing of its data
        set: grey and inverted for Omniglot; RGB, normalised per channel for the natural-image
        benchmarks; the folder data set's channels and its training split's statistics)."""
        spec = DATASETS.get(self.dataset)
        if self.image_size is None or spec is None or spec.to_input is None:
            raise UsageError("this model was not trained by run.py on an image data set: it has no image transform")
        return spec.to_input(self.state, image)

    def adapt_and_predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                          steps: Optional[int] = None, bn: str = "transductive") -> Tensor:
        """Adapt on one task's support set and return query outputs:
        ``meta.adapt(support_x, support_y, steps, bn)(query_x)``.

        support_x ``[n, ...]``, support_y ``[n]`` with labels 0..N-1 (N ≤ ``ways``), query_x
        ``[m, ...]``; returns logits ``[m, ways]`` (or predictions ``[m, out]`` for regression).
        ``steps`` defaults to the inner steps the model was evaluated with; ``bn``: see
        :class:`~bilevel_anil.meta_learner.Adapted`.
        """
        return self.meta.adapt(support_x, support_y, steps, bn=bn)(query_x)


def load(path: str | os.PathLike, device: str = "cpu", *, model: Optional[nn.Module] = None,
         loss: Any = None) -> FewShotModel:
    """Load a ``best.pt`` or ``last.pt`` written by ``run.py`` or :meth:`MetaLearner.fit`, or a
    file of :meth:`MetaLearner.save`. ``model``: an instance of the user's network class, for a
    network that is not one of the package's; ``loss``: the user's loss function, if one was used.

    Nothing in the file is run (``torch.load(weights_only=True)``); a file that is not a
    complete run checkpoint raises ``ValueError`` with a one-line message."""
    return FewShotModel(checkpoint.load_run(path), device, model=model, loss=loss, source=str(path))
