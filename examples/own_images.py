"""ANIL on your own image folders (ROOT/train|val|test/<class>/*.jpg|png) with your own CNN.

    python examples/own_images.py ROOT [--steps 2000] [--image-size 84]
"""
import argparse

from torch import nn

from bilevel_anil import MetaLearner, image_folder_tasks

parser = argparse.ArgumentParser()
parser.add_argument("root")
parser.add_argument("--steps", type=int, default=2000)
parser.add_argument("--image-size", type=int, default=84)
args = parser.parse_args()

ways, shots, size = 5, 1, args.image_size
def tasks(split, queries):
    return image_folder_tasks(args.root, ways, shots, queries, split=split, image_size=size, seed=0)

def block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

net = nn.Sequential()
net.add_module("features", nn.Sequential(block(3, 32), block(32, 32), block(32, 32), nn.Flatten()))
net.add_module("classifier", nn.Linear(32 * (size // 8) ** 2, ways))

learner = MetaLearner(net, "anil", head="classifier", inner_lr=0.1, inner_steps=5)
learner.fit(tasks("train", 15), steps=args.steps, meta_batch=8, validation=tasks("val", 15).sample(50))
result = learner.evaluate(tasks("test", 15).sample(200))
print(f"test accuracy after adaptation: {100 * result[learner.test_inner_steps].mean:.1f}% "
      f"± {100 * result[learner.test_inner_steps].ci95:.1f}%")
