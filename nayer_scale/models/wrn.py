"""Wide Residual Networks (Zagoruyko & Komodakis, BMVC 2016), as in zju-vipa/Fast-Datafree
``wresnet.py``: depth 6n+4, widths (16, 16k, 32k, 64k), pre-activation blocks, dropout 0.

Input (N, in_channels, H, W), output (N, num_classes) logits, or (logits, (N, 64k) features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .resnet_cifar import _init_weights

__all__ = ["WideResNet"]


class _WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (x if self.equal else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-depth-k. Raises ValueError when (depth - 4) is not divisible by 6."""

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages = []
        for i in range(3):
            blocks = [_WideBlock(widths[i] if j == 0 else widths[i + 1], widths[i + 1], (1 if i == 0 else 2) if j == 0 else 1)
                      for j in range(n)]
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(widths[3])
        self.classifier = nn.Linear(widths[3], num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


def _wrn(depth: int, widen: int):
    def factory(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
        return WideResNet(depth, widen, num_classes, in_channels)

    factory.__doc__ = f"WRN-{depth}-{widen} (Zagoruyko & Komodakis, 2016)."
    return factory


for _d, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    register_model(f"wrn{_d}_{_k}")(_wrn(_d, _k))
