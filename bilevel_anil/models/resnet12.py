"""ResNet-12, the backbone of MetaOptNet (Lee et al. 2019) and RFS (Tian et al. 2020).

Four residual blocks of widths 64, 160, 320, 640; each has three 3x3 convolutions with
BatchNorm and LeakyReLU(0.1), a 1x1 convolution + BatchNorm on the shortcut, and a 2x2
max-pool. Global average pooling gives 640 features (84x84 inputs: 84 → 42 → 21 → 10 → 5).
MetaOptNet's DropBlock is left out (a regulariser, not part of the function class).
"""
from __future__ import annotations

from torch import Tensor, nn

from .body_spec import BodySpec

WIDTHS = (64, 160, 320, 640)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout), nn.LeakyReLU(0.1), *_conv_bn(cout, cout), nn.LeakyReLU(0.1),
                                  *_conv_bn(cout, cout))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.shortcut(x))


def resnet12_body(in_channels: int = 3) -> tuple[nn.Module, int]:
    """A randomly initialised ResNet-12 body (images to 640 features) and its feature size."""
    blocks, cin = [], in_channels
    for width in WIDTHS:
        blocks.append(ResidualBlock(cin, width))
        cin = width
    body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
    return body, WIDTHS[-1]


# four 2x2 max-pools leave nothing of an input under 16 pixels
RESNET12 = BodySpec("resnet12", "ResNet-12 of MetaOptNet/RFS (640 features)",
                    body=lambda in_channels, image_size: resnet12_body(in_channels), min_image_size=16)
