"""Your own network on the command line: register it as a body, then run.py's every flag,
data set, checkpoint and report apply to it (here a small residual CNN on Omniglot).

    python examples/own_body.py --data-root ../shared/data --problem anil --iterations 200
"""
import sys

from torch import nn

from bilevel_anil.cli import main
from bilevel_anil.models import BodySpec, register_body


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x):
        return x + self.conv(x)


def small_resnet(in_channels, image_size):
    """Images [n, C, S, S] to 32 features: a stem, two residual blocks, global pooling."""
    body = nn.Sequential(nn.Conv2d(in_channels, 32, 3, stride=2, padding=1), nn.ReLU(), Residual(32),
                         nn.MaxPool2d(2), Residual(32), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return body, 32


register_body(BodySpec("small-resnet", "a stem and two residual blocks", body=small_resnet, min_image_size=8))
sys.exit(main(["--arch", "small-resnet", *sys.argv[1:]]))
