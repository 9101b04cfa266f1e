"""CIFAR-style ResNets: 3x3 stem, no max-pool, global average pooling, a Linear classifier.

- ``resnet8/20/32/56``: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
  Sec. 4.2 (16/32/64 channels, (depth - 2) / 6 BasicBlocks per stage); projection (1x1 conv + BN)
  shortcuts where the shape changes.
- ``resnet18/34``: the 64-128-256-512 ResNet with a 3x3 stem used for CIFAR by the DataFree /
  Fast-Datafree / NAYER code bases (zju-vipa/Fast-Datafree ``datafree/models/classifiers/resnet.py``).

All take (N, in_channels, H, W) float input of any H, W >= 8 and return (N, num_classes) logits, or
(logits, features (N, F)) with ``return_features=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

__all__ = ["BasicBlock", "CifarResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity or projection shortcut (He et al., 2016)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with a 3x3 stem and one stage per entry of ``widths`` / ``blocks``.

    Args:
        widths: channels per stage, e.g. (16, 32, 64) or (64, 128, 256, 512).
        blocks: BasicBlocks per stage.
        num_classes: classifier width K.
        in_channels: input channels (1 for Fashion-MNIST, 3 for CIFAR).
    """

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...], num_classes: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, in_planes = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, width, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = width
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.classifier = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _cifar(depth: int):
    n = (depth - 2) // 6

    def factory(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
        return CifarResNet((16, 32, 64), (n, n, n), num_classes, in_channels)

    factory.__doc__ = f"ResNet-{depth} for CIFAR (He et al., 2016): {n} BasicBlocks per stage, 16/32/64 channels."
    return factory


for _depth in (8, 20, 32, 56):
    register_model(f"resnet{_depth}")(_cifar(_depth))


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-18, CIFAR variant (3x3 stem, no max-pool), BasicBlocks [2, 2, 2, 2]."""
    return CifarResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, in_channels)


@register_model("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-34, CIFAR variant (3x3 stem, no max-pool), BasicBlocks [3, 4, 6, 3]."""
    return CifarResNet((64, 128, 256, 512), (3, 4, 6, 3), num_classes, in_channels)
