"""Where the memory bank's decoded images live: the training device, host RAM, or nowhere (read
from the shard files on every student step), chosen from the bank's projected size."""

from __future__ import annotations

import os

import psutil
import torch

from ..synthesis.labels import batches_before_epoch

__all__ = ["choose_memory_cache", "projected_bank_bytes"]


def projected_bank_bytes(cfg, world_size: int) -> int:
    """Bytes of the whole memory bank at the end of a run of ``cfg`` (a NayerConfig): uint8 images
    of all ``world_size`` processes."""
    s, run, t = cfg.synthesis, cfg.run, cfg.teacher
    batches = batches_before_epoch(run.epochs, run.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    return batches * s.batch_size * world_size * t.in_channels * t.image_size**2


def choose_memory_cache(cfg, device: torch.device, world_size: int) -> str:
    """``run.memory_cache``, or for "auto": the training device when the projected bank fits a
    quarter of its memory (CUDA) or ``run.memory_cache_gb``, else host RAM when it fits half of this
    process's share of the available RAM (or the cap), else "none" (read from the shards).

    Returns: "device", "cpu" or "none".
    """
    run = cfg.run
    if run.memory_cache != "auto":
        return run.memory_cache
    need, cap = projected_bank_bytes(cfg, world_size), run.memory_cache_gb * 2**30
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if need <= min(cap or 0.25 * total, free):
            return "device"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if need <= (cap or 0.5 * psutil.virtual_memory().available / max(1, local)):
        return "device" if device.type == "cpu" else "cpu"
    return "none"
