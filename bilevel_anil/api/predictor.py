"""Use a trained checkpoint from Python: ``model = bilevel_anil.load(path)``."""
from __future__ import annotations

import os
from typing import Any, Optional

from PIL import Image
from torch import Tensor, nn

from ..training.schema import RunCheckpoint, read_run
from ..data.registry import DATASETS
from ..errors import UsageError


class FewShotModel:
    """A trained checkpoint, ready to adapt to a new task: what ``load`` returns.

    It is a ``MetaLearner`` loaded from the file (``meta``)
    plus the input transform of the data set it was trained on.

    Args:
        saved: The checkpoint (``bilevel_anil.training.schema.read_run``).
        device: Where to put θ.
        model: The user's network, for a network that is not one of the package's.
        loss: The user's loss function, if one was used.
        source: The file's name in errors.

    Attributes:
        meta: The ``MetaLearner``.
        model: Its network, in evaluation mode.
        ways: Classes per task.
        inner_steps: The inner steps of test-time adaptation.
        inner_lr: Their step size.
        algorithm: The algorithm's name.
        bn_mode: How BatchNorm normalises (``"batch"`` or ``"running"``).
        dataset: The data set trained on (None for a learner of the Python API).

    Raises:
        ValueError: One line when the checkpoint cannot be used (see ``load``).

    Examples:
        >>> import os, tempfile
        >>> from bilevel_anil import MetaLearner, load
        >>> from bilevel_anil.models import Conv4
        >>> path = os.path.join(tempfile.mkdtemp(), "best.pt")
        >>> MetaLearner(Conv4(ways=5), "anil", inner_lr=0.4, inner_steps=3).save(path)
        >>> model = load(path)
        >>> model.algorithm, model.ways, model.inner_steps, model.inner_lr, model.bn_mode
        ('anil', 5, 3, 0.4, 'batch')
    """

    def __init__(self, saved: RunCheckpoint, device: str = "cpu", model: Optional[nn.Module] = None, loss: Any = None,
                 source: str = "the checkpoint"):
        from .meta_learner import MetaLearner

        self.meta = MetaLearner.from_state(saved, model, loss=loss, device=device, source=source)
        self.model = self.meta.model
        self.model.eval()
        self.learner = self.meta.test_learner
        record = saved.learner
        self.ways = record.arch.get("ways", self.meta.outputs)
        self.inner_steps = self.meta.test_inner_steps
        self.inner_lr = self.meta.inner_lr
        self.image_size = record.arch.get("image_size")
        self.bn_mode = record.bn_mode
        self.algorithm = record.algorithm
        self.dataset = saved.run.get("config", {}).get("dataset")
        self.device = device
        # what a data set's input transform reads (its spec's to_input)
        self.state = {"arch": record.arch, "normalization": saved.run.get("normalization")}

    def transform(self, image: Image.Image) -> Tensor:
        """A PIL image to the network's input ``[C, S, S]``, preprocessed as in training.

        Grey and inverted for Omniglot; RGB normalised per channel for the natural-image
        benchmarks; the folder data set's channels and its training split's statistics.

        Args:
            image: A PIL image.

        Returns:
            The input tensor ``[C, S, S]``.

        Raises:
            ValueError: For a model not trained by ``run.py`` on an image data set.

        Examples:
            >>> from PIL import Image
            >>> model = load("runs/anil/best.pt")  # doctest: +SKIP
            >>> model.transform(Image.open("character.png")).shape  # doctest: +SKIP
            torch.Size([1, 28, 28])
        """
        spec = DATASETS.get(self.dataset)
        if self.image_size is None or spec is None or spec.to_input is None:
            raise UsageError("this model was not trained by run.py on an image data set: it has no image transform")
        return spec.to_input(self.state, image)

    def adapt_and_predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                          steps: Optional[int] = None, bn: str = "transductive") -> Tensor:
        """Adapt to one task's support set and return the query outputs.

        The same as ``meta.adapt(support_x, support_y, steps, bn)(query_x)``: the inner loop the
        model was evaluated with (its inner optimiser, step size and, for iMAML, test-time λ).

        Args:
            support_x: Support inputs ``[n, ...]``.
            support_y: Labels ``[n]`` in 0..N-1 (N ≤ ``ways``), or regression targets ``[n, out]``.
            query_x: Query inputs ``[m, ...]``.
            steps: Inner steps (default: those the model was evaluated with).
            bn: ``"transductive"`` or ``"inductive"``: see
                ``Adapted``.

        Returns:
            Logits ``[m, ways]``, or predictions ``[m, out]`` for regression.

        Raises:
            ValueError: On inputs of the wrong shape or labels outside the head's classes.

        ``load``'s example adapts and predicts one task.
        """
        return self.meta.adapt(support_x, support_y, steps, bn=bn)(query_x)


def load(path: str | os.PathLike, device: str = "cpu", *, model: Optional[nn.Module] = None,
         loss: Any = None) -> FewShotModel:
    """Load a trained checkpoint for use on new tasks.

    Reads a ``best.pt`` or ``last.pt`` written by ``run.py`` or
    ``fit``, or a file of
    ``save``. Nothing in the file is run
    (``torch.load(weights_only=True)``).

    Args:
        path: The checkpoint.
        device: Where to put θ.
        model: An instance of your network class, for a network that is not one of the
            package's.
        loss: Your loss function, if the learner was trained with one.

    Returns:
        A ``FewShotModel``.

    Raises:
        ValueError: One line for a missing, damaged, foreign or crafted file (one whose pickle
            asks for a function or class), or a ``model`` that does not match it.

    Examples:
        >>> import os, tempfile, torch
        >>> from bilevel_anil import MetaLearner, load
        >>> from bilevel_anil.models import Conv4
        >>> path = os.path.join(tempfile.mkdtemp(), "best.pt")
        >>> MetaLearner(Conv4(ways=5), "anil", inner_lr=0.4).save(path)
        >>> model = load(path)
        >>> support_x, support_y = torch.randn(5, 1, 28, 28), torch.arange(5)
        >>> model.adapt_and_predict(support_x, support_y, torch.randn(7, 1, 28, 28)).shape
        torch.Size([7, 5])
    """
    return FewShotModel(read_run(path), device, model=model, loss=loss, source=str(path))
