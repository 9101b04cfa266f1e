"""VGG-11 with BatchNorm (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", ICLR 2015; BN after each conv) for small images, as in zju-vipa/Fast-Datafree
``vgg.py`` (from HobbitLong/RepDistiller), used by NAYER.

Five conv blocks ``block0-4`` with a 2x2 max-pool after blocks 0-2 (and after block 3 only for inputs
of 64 px or more, as the published code does for 64-px inputs), then a global average pool and a
``classifier`` Linear(512, K). Module names are the published ones, so their checkpoints load as they
are. Input (N, in_channels, H, W) float, H, W >= 8 -> logits (N, K), or (logits, features (N, 512)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .resnet_cifar import init_weights

__all__ = ["VGG", "VGG11_CFG"]

VGG11_CFG: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))
"""Configuration "A" of Simonyan & Zisserman: conv widths per block."""


def _block(widths: tuple[int, ...], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_channels = w
    return nn.Sequential(*layers[:-1])  # the last ReLU is applied in forward, as in the published code


class VGG(nn.Module):
    """VGG with BatchNorm for CIFAR-size inputs.

    Args:
        cfg: conv widths of the five blocks, e.g. :data:`VGG11_CFG`.
        num_classes: classifier width K.
        in_channels: input channels.
    """

    def __init__(self, cfg: tuple[tuple[int, ...], ...], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        widths = [in_channels] + [block[-1] for block in cfg]
        for i, block in enumerate(cfg):
            self.add_module(f"block{i}", _block(block, widths[i]))
        self.classifier = nn.Linear(widths[-1], num_classes)
        init_weights(self)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """(N, C, H, W) float -> logits (N, K), or (logits, features (N, 512)) if ``return_features``."""
        pool3 = x.shape[-2] >= 64
        out = F.max_pool2d(F.relu(self.block0(x)), 2)
        out = F.max_pool2d(F.relu(self.block1(out)), 2)
        out = F.max_pool2d(F.relu(self.block2(out)), 2)
        out = F.relu(self.block3(out))
        if pool3:
            out = F.max_pool2d(out, 2)
        out = F.relu(self.block4(out))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


@register_model("vgg11_bn")
def vgg11_bn(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-11 with BatchNorm (configuration "A" of Simonyan & Zisserman, ICLR 2015), CIFAR variant."""
    return VGG(VGG11_CFG, num_classes, in_channels)
