"""MAML on your own regression family with your own network (here: sine waves, a 1-64-64-1 MLP).

    python examples/own_regression.py [--steps 1000]
"""
import argparse

import torch
from torch import nn

from bilevel_anil import MetaLearner, function_tasks


def sine_task(g: torch.Generator):
    """One task: 10 support and 10 query points of y = A sin(x + b)."""
    amplitude, phase = 0.1 + 4.9 * torch.rand(1, generator=g), 3.1416 * torch.rand(1, generator=g)
    x = 10 * torch.rand(20, 1, generator=g) - 5
    y = amplitude * torch.sin(x + phase)
    return x[:10], y[:10], x[10:], y[10:]


parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=1000)
steps = parser.parse_args().steps

net = nn.Sequential(nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
learner = MetaLearner(net, "maml", loss="mse", inner_lr=0.01, meta_lr=0.001)
validation = function_tasks(sine_task, seed=1).sample(100)
learner.fit(function_tasks(sine_task, seed=0), steps=steps, meta_batch=25, validation=validation)
for k, score in learner.evaluate(validation, steps=[0, 1, 10]).items():
    print(f"query MSE after {k:2d} inner steps: {score.mean:.3f} ± {score.ci95:.3f}")
