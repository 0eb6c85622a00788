"""The nearest-centroid classifier on a frozen body: the baseline every few-shot table carries.

Each query takes the class whose support features' mean (centroid) is nearest. How features
are compared is a ``CentroidRule``: a distance (Euclidean, as Prototypical Networks; or
cosine) after an optional feature transform (SimpleShot, Wang et al. 2019: ``"l2"`` scales
each feature vector to unit length, ``"centred-l2"`` first subtracts the mean feature of the
training images). ``centroid_scores`` scores every rule from one pass over the tasks, so
that the best one can be chosen on validation tasks.

Example:
    >>> import torch
    >>> support = torch.tensor([[[0., 0.], [4., 0.]]])       # one task: class 0 at (0,0), class 1 at (4,0)
    >>> query = torch.tensor([[[1., 0.], [3.5, 1.]]])
    >>> centroid_predictions(support, torch.tensor([[0, 1]]), query, 2, CentroidRule())
    tensor([[0, 1]])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UsageError
from ..core.tasks import TaskBatch
from ..core.evaluation import Interval, eval_mode

DISTANCES = ("euclidean", "cosine")
FEATURE_NORMS = ("none", "l2", "centred-l2")


@dataclass(frozen=True)
class CentroidRule:
    """How the nearest-centroid classifier compares features.

    Args:
        distance: ``"euclidean"`` or ``"cosine"``.
        norm: ``"none"``, ``"l2"`` (unit-length features) or ``"centred-l2"`` (subtract the
            training images' mean feature, then l2, as in SimpleShot).

    Raises:
        ValueError: For an unknown distance or norm.

    Examples:
        >>> CentroidRule("cosine", "l2").name
        'cosine/l2'
        >>> CentroidRule.parse("euclidean/centred-l2")
        CentroidRule(distance='euclidean', norm='centred-l2')
    """

    distance: str = "euclidean"
    norm: str = "none"

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise UsageError(f"unknown distance {self.distance!r}: choose one of {', '.join(DISTANCES)}")
        if self.norm not in FEATURE_NORMS:
            raise UsageError(f"unknown feature norm {self.norm!r}: choose one of {', '.join(FEATURE_NORMS)}")

    @property
    def name(self) -> str:
        """``euclidean``, ``cosine/l2``, ...: the rule as a table label.
        """
        return self.distance if self.norm == "none" else f"{self.distance}/{self.norm}"

    @staticmethod
    def parse(name: str) -> "CentroidRule":
        """The rule named ``distance`` or ``distance/norm`` (the inverse of ``name``).

        Args:
            name: For example ``"cosine"`` or ``"euclidean/centred-l2"``.

        Returns:
            The ``CentroidRule``.

        Raises:
            ValueError: For an unknown distance or norm.
        """
        distance, _, norm = name.partition("/")
        return CentroidRule(distance, norm or "none")


ALL_RULES = tuple(CentroidRule(d, n) for n in FEATURE_NORMS for d in DISTANCES)


def transform(features: Tensor, norm: str, centre: Optional[Tensor] = None) -> Tensor:
    """Features ``[..., D]`` under a ``FEATURE_NORMS`` transform (``centre``: the training
    mean feature ``[D]``, needed by ``"centred-l2"``)."""
    if norm == "none":
        return features
    if norm == "centred-l2":
        if centre is None:
            raise UsageError("the centred-l2 feature norm needs the training images' mean feature (centre=)")
        features = features - centre
    return F.normalize(features, dim=-1)


def centroid_predictions(support: Tensor, support_y: Tensor, query: Tensor, ways: int, rule: CentroidRule,
                         centre: Optional[Tensor] = None) -> Tensor:
    """Predicted classes ``[B, q]`` of query features ``[B, q, D]`` from support features
    ``[B, n, D]`` with labels ``[B, n]`` in ``0..ways-1``."""
    support, query = transform(support, rule.norm, centre), transform(query, rule.norm, centre)
    onehot = F.one_hot(support_y, ways).to(support.dtype)  # [B, n, N]
    means = onehot.transpose(1, 2) @ support / onehot.sum(1).unsqueeze(-1).clamp_min(1)
    if rule.distance == "cosine":
        return (F.normalize(query, dim=-1) @ F.normalize(means, dim=-1).transpose(1, 2)).argmax(-1)
    return torch.cdist(query, means).argmin(-1)


def body_features(model: nn.Module, x: Tensor) -> Tensor:
    """Features ``[B, n, D]`` of task-batched inputs ``[B, n, ...]`` under the model's own
    parameters (``body_forward``; each set normalised with its own BatchNorm statistics)."""
    theta = {n: p.detach() for n, p in model.named_parameters()}
    return model.body_forward(theta, x)


def training_mean_feature(model: nn.Module, images: Tensor, to_input=lambda x: x, sample: int = 2000,
                          seed: int = 0, chunk: int = 250) -> Tensor:
    """The mean feature ``[D]`` of ``sample`` training images drawn with ``seed`` (the
    centre of ``"centred-l2"``), computed in sets of ``chunk`` as the tasks' sets are."""
    device = next(model.parameters()).device
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:sample]
    total, count = None, 0
    with torch.no_grad(), eval_mode(model):
        for start in range(0, len(pick), chunk):
            x = to_input(images[pick[start:start + chunk]]).to(device)
            f = body_features(model, x.unsqueeze(0))[0]
            total = f.sum(0) if total is None else total + f.sum(0)
            count += len(f)
    return total / count


def centroid_scores(model: nn.Module, episodes, rules: Sequence[CentroidRule] = ALL_RULES,
                    centre: Optional[Tensor] = None, chunk: int = 16) -> dict[CentroidRule, Tensor]:
    """Per-task query accuracy ``[tasks]`` of each rule, from one pass of the frozen body over
    the tasks (rules needing ``centre`` are skipped when it is None)."""
    rules = [r for r in rules if r.norm != "centred-l2" or centre is not None]
    device = next(model.parameters()).device
    scores: dict[CentroidRule, list[Tensor]] = {r: [] for r in rules}
    with torch.no_grad(), eval_mode(model):
        for part in episodes.chunks(chunk):
            part = part.to(device)
            support, query = body_features(model, part.support.x), body_features(model, part.query.x)
            ways = int(part.support.y.max()) + 1
            for rule in rules:
                predicted = centroid_predictions(support, part.support.y, query, ways, rule, centre)
                scores[rule].append((predicted == part.query.y).float().mean(1).cpu())
    return {r: torch.cat(v) for r, v in scores.items()}


def centroid_accuracy(model: nn.Module, episodes: TaskBatch, rule: CentroidRule = CentroidRule(),
                      centre: Optional[Tensor] = None) -> Interval:
    """Few-shot accuracy of a network's frozen body under the nearest-centroid classifier.

    Each query is given the class of the nearest support-class mean of the body's features.

    Args:
        model: A network of the package's (``bilevel_anil.models``, or one ``run.py`` built):
            it computes body features per task. For a network of your own, the Euclidean
            rule on its head's input is ``MetaLearner(net, "protonet").evaluate(tasks)``.
        episodes: The tasks (``TaskBatch``).
        rule: The distance and feature normalisation.
        centre: The training images' mean feature, which ``"centred-l2"`` needs.

    Returns:
        The mean query accuracy with its 95% interval
        (``Interval``).

    Examples:
        >>> import torch
        >>> from bilevel_anil import TaskBatch, CentroidRule, centroid_accuracy
        >>> from bilevel_anil.models import Conv4
        >>> x, y = torch.randn(4, 3, 1, 28, 28), torch.arange(3).repeat(4, 1)
        >>> batch = TaskBatch.of(x, y, x, y)  # queries equal to the support images
        >>> centroid_accuracy(Conv4(ways=3), batch, CentroidRule("cosine")).mean
        1.0
    """
    return Interval.of(centroid_scores(model, episodes, [rule], centre)[rule])


def best_rule(intervals: Mapping[CentroidRule, Interval]) -> CentroidRule:
    """The rule of highest mean accuracy (the first listed among equals)."""
    return max(intervals, key=lambda r: intervals[r].mean)
