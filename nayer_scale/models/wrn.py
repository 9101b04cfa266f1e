"""Wide Residual Networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016) as in
zju-vipa/Fast-Datafree ``wresnet.py`` (from polo5/ZeroShotKnowledgeTransfer), used by NAYER:
depth 6n + 4, widths (16, 16k, 32k, 64k), pre-activation blocks, dropout 0.

Module names are the published ones (``conv1, block1-3.layer.i.{bn1, conv1, bn2, conv2, convShortcut},
bn1, fc``), so Fast-Datafree / CMI / NAYER checkpoints load as they are. Input (N, in_channels, H, W)
float, H, W >= 8 -> logits (N, num_classes), or (logits, features (N, 64k)) with ``return_features``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .resnet_cifar import init_weights

__all__ = ["WideBasicBlock", "NetworkBlock", "WideResNet"]


class WideBasicBlock(nn.Module):
    """Pre-activation block BN-ReLU-conv3x3-BN-ReLU-conv3x3 (no dropout). When the width changes, the
    shortcut is a 1x1 conv (``convShortcut``) of the pre-activated input, as in the published code."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.equal_in_out else self.convShortcut(pre))


class NetworkBlock(nn.Module):
    """``n`` WideBasicBlocks; the first one changes width and stride."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                for i in range(n)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` (Zagoruyko & Komodakis, BMVC 2016).

    Args:
        depth: 6n + 4 (16, 40, ...).
        widen: widening factor k.
        num_classes: classifier width K.
        in_channels: input channels.

    Raises:
        ValueError: depth is not 6n + 4 with n >= 1.
    """

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)
        nn.init.zeros_(self.fc.bias)

    @property
    def classifier(self) -> nn.Linear:
        """The final nn.Linear (``fc``)."""
        return self.fc

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(N, C, H, W) float -> logits (N, K), or (logits, features (N, 64k)) if ``return_features``."""
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.fc(features)
        return (logits, features) if return_features else logits


def _wrn(depth: int, widen: int):
    def factory(num_classes: int = 10, in_channels: int = 3) -> WideResNet:
        return WideResNet(depth, widen, num_classes, in_channels)

    factory.__name__ = factory.__qualname__ = f"wrn{depth}_{widen}"
    factory.__doc__ = f"WRN-{depth}-{widen} (Zagoruyko & Komodakis, BMVC 2016), dropout 0."
    return factory


wrn16_1 = register_model("wrn16_1")(_wrn(16, 1))
wrn16_2 = register_model("wrn16_2")(_wrn(16, 2))
wrn40_1 = register_model("wrn40_1")(_wrn(40, 1))
wrn40_2 = register_model("wrn40_2")(_wrn(40, 2))
