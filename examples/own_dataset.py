"""ANIL on your own map-style Dataset of (input, class) pairs, then save, load and predict.

Here the dataset is synthetic (64 classes of 16-d points around their own centre, split by
class into meta-training and held-out classes); any torch Dataset of (tensor, int) works.

    python examples/own_dataset.py [--steps 300] [--out runs/own-dataset]
"""
import argparse

import torch
from torch import nn
from torch.utils.data import TensorDataset

import bilevel_anil
from bilevel_anil import MetaLearner, dataset_tasks

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--out", default="runs/own-dataset")
args = parser.parse_args()


def clusters(classes, per_class, seed):
    g = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(classes, 16, generator=g)
    x = centres.repeat_interleave(per_class, 0) + torch.randn(classes * per_class, 16, generator=g)
    return TensorDataset(x, torch.arange(classes).repeat_interleave(per_class))


train, held_out = clusters(48, 20, seed=0), clusters(16, 20, seed=1)
net = nn.Sequential()
net.add_module("encoder", nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU()))
net.add_module("out", nn.Linear(64, 5))
learner = MetaLearner(net, "anil", head="out", inner_lr=0.5, inner_steps=5)
learner.fit(dataset_tasks(train, ways=5, shots=1, queries=5, seed=0), steps=args.steps, meta_batch=8,
            validation=dataset_tasks(held_out, 5, 1, 5, seed=1).sample(50), out=args.out)
test = dataset_tasks(held_out, 5, 1, 5, seed=2).sample(200)
print({k: f"{100 * v.mean:.1f}% ± {100 * v.ci95:.1f}%" for k, v in learner.evaluate(test).items()})

model = bilevel_anil.load(f"{args.out}/best.pt", model=net)  # your network class, its saved weights
logits = model.adapt_and_predict(test.support.x[0], test.support.y[0], test.query.x[0], bn="inductive")
print(f"one new task: {(logits.argmax(1) == test.query.y[0]).float().mean():.0%} of its queries right")
