"""A network adapted to the support sets of B tasks (what ``MetaLearner.adapt`` returns)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.evaluation import eval_mode
from ..core.learner import Learner
from ..errors import UsageError


class Adapted:
    """A network adapted to the support sets of B tasks: call it on query inputs.

    Made by ``MetaLearner.adapt``. Calling it with query inputs ``[m, ...]`` (one task) or
    ``[B, m, ...]`` (B tasks) returns the network's outputs at the adapted weights.

    ``bn`` says how BatchNorm layers that normalise with batch statistics see the queries:
    ``"transductive"`` (the default, as in the MAML reference and the package's results): the
    queries of a task are normalised together, so a query's output depends on the other
    queries of its call; ``"inductive"``: each query is normalised together with its task's
    support set only (the Reptile paper's non-transductive protocol), so its output does not
    depend on the other queries. Networks without such layers give the same outputs either way.

    Args:
        learner: The learner that adapted (internal; ``MetaLearner.adapt`` makes this object).
        theta: The meta-parameters adapted from.
        fast: The adapted parameters, ``[B, ...]`` per task.
        support_x: The support inputs, which inductive BatchNorm normalises the queries with.
        batched: Whether the support set was given as ``[B, n, ...]``.
        bn: ``"transductive"`` or ``"inductive"``.

    Raises:
        ValueError: On a call whose query inputs do not match the support set's shape.

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
        >>> adapted = learner.adapt(sx, sy, steps=3)
        >>> adapted(qx).shape
        torch.Size([5, 1])
    """

    def __init__(self, learner: Learner, theta: dict, fast: dict, support_x: Tensor, batched: bool, bn: str):
        self.learner, self.theta, self.fast = learner, theta, fast
        self.support_x, self.batched, self.bn = support_x, batched, bn

    def __call__(self, query_x: Tensor) -> Tensor:
        """The network's outputs for query inputs at the adapted weights.

        Args:
            query_x: Inputs ``[m, ...]`` (one task) or ``[B, m, ...]`` (B tasks, as adapted).

        Returns:
            Logits ``[m, ways]`` or ``[B, m, ways]`` (predictions ``[..., out]`` for regression).

        Raises:
            ValueError: When the inputs do not match the support set's shape.
        """
        qx = query_x if self.batched else query_x.unsqueeze(0)
        if not isinstance(query_x, Tensor) or qx.dim() != self.support_x.dim() or qx.shape[2:] != self.support_x.shape[2:] \
                or qx.shape[0] != self.support_x.shape[0]:
            raise UsageError(f"query inputs of shape {tuple(getattr(query_x, 'shape', ()))} do not match the support "
                             f"inputs {tuple(self.support_x.shape[0 if self.batched else 1:])} (one task: [m, ...]; "
                             "B tasks: [B, m, ...])")
        qx = qx.to(self.support_x.device)
        with torch.no_grad(), eval_mode(self.learner.model):
            if self.bn == "transductive" or not _uses_batch_statistics(self.learner.model):
                out = self.learner.predictor(self.theta, qx)(self.fast)
            else:
                tasks, m = qx.shape[:2]
                support = self.support_x.repeat_interleave(m, dim=0)  # [B*m, n, ...]
                joined = torch.cat([support, qx.flatten(0, 1).unsqueeze(1)], dim=1)
                fast = {k: v.repeat_interleave(m, dim=0) for k, v in self.fast.items()}
                out = self.learner.predictor(self.theta, joined)(fast)[:, -1].unflatten(0, (tasks, m))
        return out if self.batched else out[0]


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _uses_batch_statistics(model: nn.Module) -> bool:
    """Whether some BatchNorm layer normalises with the statistics of the batch it is given."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats)
               for m in model.modules())
