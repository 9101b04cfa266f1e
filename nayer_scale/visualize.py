"""Sample grids of synthetic images: one row per class."""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image

from .storage import atomic_write_bytes

__all__ = ["save_sample_grid"]


def save_sample_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    path: str | os.PathLike,
    per_class: int = 8,
    max_rows: int = 100,
) -> np.ndarray:
    """Write a PNG grid with one row per class holding up to ``per_class`` of its images.

    With at most ``max_rows`` classes every class gets a row (blank if absent, so rows line up
    across epochs); with more (ImageNet) only the classes present in the batch get rows, the first
    ``max_rows`` of them in class order.

    Args:
        images: (N, C, H, W) float in [0, 1], C in {1, 3}, any device.
        labels: (N,) int class indices.
        num_classes: number of classes K.
        path: output .png path, written atomically (``nayer_scale.storage.atomic_write_bytes``: never a
            half-written file).
    Returns:
        The grid's pixels, (H, W, C) uint8 (for the experiment trackers).
    """
    images = images.detach().float().clamp(0, 1).cpu()
    labels = labels.detach().cpu()
    _, c, h, w = images.shape
    pad = 1
    rows = list(range(num_classes)) if num_classes <= max_rows else labels.unique().tolist()[:max_rows]
    grid = np.ones((len(rows) * (h + pad) + pad, per_class * (w + pad) + pad, c), dtype=np.float32)
    for row, k in enumerate(rows):
        picks = images[labels == k][:per_class]
        for j, img in enumerate(picks):
            y, x = pad + row * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = img.permute(1, 2, 0).numpy()
    pixels = (grid * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return pixels
