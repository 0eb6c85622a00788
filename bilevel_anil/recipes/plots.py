"""Figures of a run: sine tasks with the learner's fit before and after adaptation."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

from ..core.tasks import seeded
from ..data.sine import SineTasks, sine
from ..core.evaluation import eval_mode
from ..core.learner import Learner


def plot_sine_tasks(learner: Learner, theta: Mapping[str, Tensor], samplers: Mapping[str, SineTasks],
                    lr: float, steps: Sequence[int], path: Path, title: str, tasks: int = 4, seed: int = 0) -> Path:
    """One row per sampler (e.g. K=5, K=10) of ``tasks`` new tasks: the true curve, the support
    points and the prediction after each number of inner steps in ``steps``; saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = torch.linspace(-5, 5, 200).view(1, -1, 1)
    fig, axes = plt.subplots(len(samplers), tasks, figsize=(3.2 * tasks, 2.8 * len(samplers)), squeeze=False,
                             sharex=True)
    device = next(iter(theta.values())).device
    for row, (label, sampler) in enumerate(samplers.items()):
        with seeded(seed + row):
            batch, amplitude, phase = sampler.sample_with_truth(tasks)
        x = grid.expand(tasks, -1, -1)
        with torch.no_grad(), eval_mode(learner.model):
            predict = learner.predictor(theta, x.to(device))
            path_fast = list(learner.adapt_path(theta, batch.support.x.to(device), batch.support.y.to(device),
                                                max(steps), lr))
            curves = {k: predict(path_fast[k]).cpu() for k in steps}
        for t in range(tasks):
            ax = axes[row, t]
            ax.plot(grid.flatten(), sine(grid, amplitude[t], phase[t]).flatten(), color="black", lw=2, label="true")
            for k, pred in curves.items():
                ax.plot(grid.flatten(), pred[t].flatten(), lw=1.2, ls="--" if k == 0 else "-",
                        label=f"{k} step{'s' if k != 1 else ''}")
            ax.scatter(batch.support.x[t].flatten(), batch.support.y[t].flatten(), color="red", zorder=5,
                       s=18, label=f"support ({label})")
            ax.set_title(f"{label}: A={amplitude[t].item():.2f}, phase={phase[t].item():.2f}", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
