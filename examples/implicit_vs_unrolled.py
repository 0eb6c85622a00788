"""Implicit vs unrolled meta-gradients on your own network: each against the exact implicit
gradient of the proximal inner objective, on one fixed meta-batch.

    python examples/implicit_vs_unrolled.py [--inner-steps 100]
"""
import argparse

import torch
from torch import nn

from bilevel_anil import MetaLearner, TaskBatch, compare_meta_gradients

parser = argparse.ArgumentParser()
parser.add_argument("--inner-steps", type=int, default=100)
inner_steps = parser.parse_args().inner_steps

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))  # a 4-way classifier of 8-d inputs
labels = torch.arange(4).repeat(8, 2)  # 8 tasks, 2 examples per class
batch = TaskBatch.of(torch.randn(8, 8, 8), labels, torch.randn(8, 8, 8), labels)

for algorithm in ("ianil", "imaml"):  # the head only (exact: a direct solve), the whole network (CG)
    learner = MetaLearner(net, algorithm, lam=2.0, inner_lr=0.05)
    result = compare_meta_gradients(learner, batch, inner_steps=inner_steps, ks=(1, 5, 20), unroll=(1, 10, 100))
    print(f"\n{algorithm}: relative error of each meta-gradient against the exact one")
    print(result.table())
