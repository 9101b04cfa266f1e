"""CIFAR-style ResNets: 3x3 stem, no max-pool, global average pooling, a Linear classifier.

- ``resnet8/20/32/56`` (:class:`CifarResNet`): He et al., "Deep Residual Learning for Image
  Recognition", CVPR 2016, Sec. 4.2: 16/32/64 channels, (depth - 2) / 6 BasicBlocks per stage, a
  1x1 conv + BN projection shortcut where the shape changes. Module names follow the published
  RepDistiller / Fast-Datafree / NAYER ``resnet_tiny.py`` (``conv1, bn1, layer1-3, downsample, fc``),
  so their checkpoints load as they are.
- ``resnet18/34`` (:class:`ResNet`): the 64-128-256-512 ResNet with a 3x3 stem used for CIFAR by DAFL,
  CMI, Fast-Datafree and NAYER (zju-vipa/Fast-Datafree ``datafree/models/classifiers/resnet.py``),
  same module names (``conv1, bn1, layer1-4, shortcut, linear``).

Every model maps a float tensor (N, in_channels, H, W), any H, W >= 8, to float logits
(N, num_classes), or to ``(logits, features)`` with ``return_features=True``, features being the
globally average-pooled penultimate activations (N, 64) or (N, 512). ``model.classifier`` is the final
nn.Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

__all__ = ["CifarBasicBlock", "CifarResNet", "BasicBlock", "ResNet", "init_weights"]


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) conv weights and zero conv biases; BatchNorm weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU (He et al., 2016).

    ``downsample`` is a 1x1 conv + BN projection when ``stride != 1`` or the width changes, else None
    (identity). (N, in_planes, H, W) -> (N, planes, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    """ResNet-``depth`` for CIFAR (He et al., CVPR 2016, Sec. 4.2), depth = 6n + 2.

    Args:
        depth: 8, 20, 32, 56, ... (n = (depth - 2) / 6 BasicBlocks per stage).
        num_classes: classifier width K.
        in_channels: input channels (1 for Fashion-MNIST, 3 for CIFAR).
        widths: stem width then the widths of the three stages.

    Raises:
        ValueError: depth is not 6n + 2 with n >= 1.
    """

    def __init__(
        self, depth: int, num_classes: int, in_channels: int = 3, widths: tuple[int, int, int, int] = (16, 16, 32, 64)
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 20, 32, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._stage(widths[0], widths[1], n, 1)
        self.layer2 = self._stage(widths[1], widths[2], n, 2)
        self.layer3 = self._stage(widths[2], widths[3], n, 2)
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            *[CifarBasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(blocks)]
        )

    @property
    def classifier(self) -> nn.Linear:
        """The final nn.Linear (``fc``)."""
        return self.fc

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(N, C, H, W) float -> logits (N, K), or (logits, features (N, 64)) if ``return_features``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.fc(features)
        return (logits, features) if return_features else logits


class BasicBlock(nn.Module):
    """The DAFL / CMI / Fast-Datafree BasicBlock: as :class:`CifarBasicBlock`, the projection being
    called ``shortcut`` (an empty nn.Sequential, i.e. identity, when the shape is unchanged)."""

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


class ResNet(nn.Module):
    """CIFAR ResNet-18/34 (He et al., CVPR 2016, with a 3x3 stride-1 stem and no max-pool, as in
    DAFL, CMI, Fast-Datafree and NAYER): stages of 64/128/256/512 channels.

    Args:
        num_blocks: BasicBlocks per stage, (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-34.
        num_classes: classifier width K.
        in_channels: input channels.
    """

    def __init__(self, num_blocks: tuple[int, int, int, int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths, in_planes = (64, 128, 256, 512), 64
        for i, (planes, n) in enumerate(zip(widths, num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(512, num_classes)
        init_weights(self)

    @property
    def classifier(self) -> nn.Linear:
        """The final nn.Linear (``linear``)."""
        return self.linear

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(N, C, H, W) float -> logits (N, K), or (logits, features (N, 512)) if ``return_features``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.linear(features)
        return (logits, features) if return_features else logits


def _cifar(depth: int):
    def factory(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, num_classes, in_channels)

    factory.__name__ = factory.__qualname__ = f"resnet{depth}"
    factory.__doc__ = (
        f"ResNet-{depth} for CIFAR (He et al., CVPR 2016): {(depth - 2) // 6} BasicBlock(s) per stage, "
        "16/32/64 channels."
    )
    return factory


resnet8 = register_model("resnet8")(_cifar(8))
resnet20 = register_model("resnet20")(_cifar(20))
resnet32 = register_model("resnet32")(_cifar(32))
resnet56 = register_model("resnet56")(_cifar(56))


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-18, CIFAR variant (He et al., CVPR 2016; 3x3 stem, no max-pool), BasicBlocks [2, 2, 2, 2]."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels)


@register_model("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-34, CIFAR variant (He et al., CVPR 2016; 3x3 stem, no max-pool), BasicBlocks [3, 4, 6, 3]."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels)
