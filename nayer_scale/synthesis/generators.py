"""Convolutional generators for synthetic images (Fast-Datafree / NAYER ``Generator``).

Architecture of the published CIFAR generator (docs/method.md, "The pieces"): Linear(noise_dim ->
2*width*s*s) with s = image_size / 2**U, BatchNorm2d, then U stages of (Upsample x2, Conv3x3, BatchNorm2d,
LeakyReLU 0.2) with widths 2*width -> 2*width -> width, then Conv3x3 -> channels and a Sigmoid so
that images lie in [0, 1] (normalisation happens in the augmentation, not here). U = 2 for 28 and
32 px, 3 for 64 px.

From 112 px up (ImageNet, 224 px) the published ImageNet generator is used: Linear(noise_dim ->
2*width*s*s) with s = image_size / 16 (14 at 224 px), BatchNorm2d, one Conv3x3 block (2*width, BN,
LeakyReLU 0.2) at s x s, then four (Upsample x2, Conv3x3, BN, LeakyReLU 0.2) stages with widths
2*width -> 2*width -> width -> width -> width (128 -> 128 -> 64 -> 64 -> 64 at width 64), Conv3x3 ->
channels, Sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Generator"]


class Generator(nn.Module):
    """Image generator G: (B, noise_dim) -> (B, channels, image_size, image_size) in [0, 1].

    Args:
        noise_dim: input width (output of the noisy layer), 1000 in the paper.
        image_size: 28, 32 or 64 (any size divisible by 2**U works); >= 112 and divisible by 16
            selects the ImageNet generator (224 px in the paper).
        channels: 1 or 3.
        width: base number of feature maps ("ngf"; 64 in the paper's CIFAR runs).

    Raises:
        ValueError: if image_size is not divisible by 2**U.
    """

    def __init__(self, noise_dim: int, image_size: int, channels: int, width: int = 64) -> None:
        super().__init__()
        imagenet = image_size >= 112
        stages = 4 if imagenet else 3 if image_size >= 64 else 2
        if image_size % (2**stages):
            raise ValueError(f"image_size {image_size} must be divisible by {2**stages}")
        self.init_size = image_size // 2**stages
        self.noise_dim = noise_dim
        self.fc = nn.Linear(noise_dim, 2 * width * self.init_size**2)
        if imagenet:
            widths = [2 * width, 2 * width, width, width, width]
            layers: list[nn.Module] = [
                nn.BatchNorm2d(2 * width),
                nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
                nn.BatchNorm2d(2 * width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        else:
            widths = [2 * width] * stages + [width]
            layers = [nn.BatchNorm2d(2 * width)]
        for i in range(stages):
            layers += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(widths[i + 1]),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        h = self.fc(noise)
        h = h.view(h.shape[0], -1, self.init_size, self.init_size)
        return self.body(h)
