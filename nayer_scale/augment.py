"""Batched, on-device image augmentation: per-sample random crop with zero padding, horizontal flip,
normalisation. Used for the synthesis batch (gradients flow back to the generator) and for the
student's batches from the memory bank (the real dataset's train transform, applied on the device
so the student never waits on a CPU data pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchAugment", "Normalize"]


class Normalize(nn.Module):
    """x -> (x - mean) / std per channel. x: (N, C, H, W) in [0, 1]; mean/std: C floats."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} entries but std has {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"images have {x.shape[1]} channels, normalisation has {self.mean.shape[1]}")
        return ((x - self.mean) * self.inv_std).to(x.dtype)


class BatchAugment(nn.Module):
    """Random crop (zero padding ``padding`` px, a fresh offset per sample) + random horizontal
    flip (p = 0.5 per sample) + normalisation, on a whole batch at once.

    Args:
        mean, std: per-channel normalisation constants of the teacher's input.
        padding: crop padding in pixels (4 for CIFAR in the published code); 0 disables the crop.
        flip: whether to apply random horizontal flips.

    Shapes: forward takes x (N, C, H, W) float in [0, 1] and an optional torch.Generator on x's
    device, returns the normalised (N, C, H, W) tensor; differentiable w.r.t. x.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], padding: int = 4, flip: bool = True):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.padding = int(padding)
        self.flip = bool(flip)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.padding > 0:
            p = self.padding
            offsets = torch.randint(0, 2 * p + 1, (2, n), device=x.device, generator=generator)
            padded = F.pad(x, (p, p, p, p))
            rows = (offsets[0].view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1)
            cols = (offsets[1].view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w)
            # Gather an (h, w) window at a per-sample offset: index rows, then columns.
            x = padded.gather(2, rows.expand(n, x.shape[1], h, w + 2 * p))
            x = x.gather(3, cols.expand(n, x.shape[1], h, w))
        if self.flip:
            mask = torch.rand(n, device=x.device, generator=generator) < 0.5
            x = torch.where(mask.view(n, 1, 1, 1), x.flip(3), x)
        return self.normalize(x)
