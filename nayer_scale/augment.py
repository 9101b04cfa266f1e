"""Batched, on-device image augmentation: per-sample random roll jitter, random crop with zero
padding or random resized crop, horizontal flip, normalisation. Used for the synthesis batch
(gradients flow back to the generator) and for the student's batches from the memory bank (the real
dataset's train transform, applied on the device so the student never waits on a CPU data pipeline).

Every random draw comes from the ``torch.Generator`` passed in and stays on the images' device: no
host-device synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchAugment", "Normalize", "random_resized_crop", "random_roll"]


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


def random_roll(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample cyclic shift of (N, C, H, W) images by (dy, dx), each uniform in
    [-max_shift, max_shift] (DeepInversion's "random jitter", Yin et al., CVPR 2020, drawn per sample
    instead of per batch). Differentiable w.r.t. ``x``; returns a tensor of x's shape and dtype."""
    n, c, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (2, n), device=x.device, generator=generator)
    rows = (torch.arange(h, device=x.device) - shifts[0].view(n, 1)).remainder(h).view(n, 1, h, 1)
    cols = (torch.arange(w, device=x.device) - shifts[1].view(n, 1)).remainder(w).view(n, 1, 1, w)
    x = x.gather(2, rows.expand(n, c, h, w))
    return x.gather(3, cols.expand(n, c, h, w))


def random_resized_crop(
    x: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Batched RandomResizedCrop (Szegedy et al., CVPR 2015; torchvision's ImageNet train transform)
    with an optional horizontal flip, as one bilinear ``grid_sample`` per batch.

    Per sample: area fraction a ~ U(scale), log aspect ratio ~ U(log ratio), crop width and height
    (fractions of the image) sqrt(a * r) and sqrt(a / r), each clipped to 1 (torchvision instead
    retries and falls back to a centre crop), and a centre uniform over the positions that keep the
    crop inside the image; the crop is resampled to the input size.

    Args:
        x: (N, C, H, W) float images. scale: (min, max) area fractions in (0, 1]. ratio: (min, max)
        aspect ratios. flip: also flip each sample horizontally with p = 0.5.
    Returns:
        (N, C, H, W) tensor of x's dtype, differentiable w.r.t. ``x``.
    """
    n = x.shape[0]
    draws = torch.rand(4, n, device=x.device, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * draws[0]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[1])
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    # affine_grid works in [-1, 1] coordinates: a crop of relative size s has half-extent s and its
    # centre can move by up to 1 - s either way.
    cx = (1 - width) * (2 * draws[2] - 1)
    cy = (1 - height) * (2 * draws[3] - 1)
    sx = width
    if flip:
        mirror = torch.rand(n, device=x.device, generator=generator) < 0.5
        sx = torch.where(mirror, -width, width)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, height, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False).to(x.dtype)


class BatchAugment(nn.Module):
    """Synthesis / student augmentation on a whole batch at once, in this order:

    1. random roll jitter of up to ``roll`` px per axis (``random_roll``; ImageNet synthesis);
    2. either a random crop with zero padding ``padding`` px (a fresh offset per sample; CIFAR-style)
       or, when ``resized_crop`` is given, a random resized crop with that area range
       (``random_resized_crop``; ImageNet);
    3. a random horizontal flip (p = 0.5 per sample) when ``flip``;
    4. normalisation with ``mean`` / ``std``.

    Args:
        mean, std: per-channel normalisation constants of the teacher's input.
        padding: crop padding in pixels (4 for CIFAR in the published code); 0 disables the crop.
        flip: whether to apply random horizontal flips.
        roll: maximum roll jitter in pixels; 0 disables it.
        resized_crop: (min, max) area fractions of a random resized crop, or None.

    Shapes: forward takes x (N, C, H, W) float in [0, 1] and an optional torch.Generator on x's
    device, returns the normalised (N, C, H, W) tensor; differentiable w.r.t. x.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        padding: int = 4,
        flip: bool = True,
        roll: int = 0,
        resized_crop: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.padding = int(padding)
        self.flip = bool(flip)
        self.roll = int(roll)
        self.resized_crop = tuple(resized_crop) if resized_crop else None

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.roll > 0:
            x = random_roll(x, self.roll, generator)
        if self.resized_crop is not None:
            return self.normalize(random_resized_crop(x, self.resized_crop, flip=self.flip, generator=generator))
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
