"""VGG-11 with BatchNorm (Simonyan & Zisserman, ICLR 2015) for small images, as in
zju-vipa/Fast-Datafree ``vgg.py``; an adaptive average pool before the classifier makes it accept any
input size >= 8 px. Input (N, C, H, W) -> (N, num_classes), or (logits, (N, 512) features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .resnet_cifar import _init_weights

__all__ = ["VGG"]

_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)


class VGG(nn.Module):
    def __init__(self, cfg: tuple, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


@register_model("vgg11_bn")
def vgg11_bn(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-11 with BatchNorm (configuration A of Simonyan & Zisserman, 2015)."""
    return VGG(_VGG11, num_classes, in_channels)
