"""Where the memory bank's decoded images live: the training device, host RAM, one copy per node
in shared memory, or nowhere (read from the shard files on every student step), chosen from the
bank's projected size."""

from __future__ import annotations

import os
import shutil

import psutil
import torch

from ..synthesis.labels import batches_before_epoch
from .node_cache import default_shm_dir

__all__ = ["choose_memory_cache", "projected_bank_bytes"]


def projected_bank_bytes(cfg, world_size: int) -> int:
    """Bytes of the whole memory bank at the end of a run of ``cfg`` (a NayerConfig): uint8 images
    of all ``world_size`` processes, at most ``memory.max_images`` of them."""
    s, run, t = cfg.synthesis, cfg.run, cfg.teacher
    batches = batches_before_epoch(run.epochs, run.warmup_epochs, s.warmup_batches_per_epoch, s.batches_per_epoch)
    images = batches * s.batch_size * world_size
    if cfg.memory.max_images:
        images = min(images, cfg.memory.max_images)
    return images * t.in_channels * t.image_size**2


def choose_memory_cache(cfg, device: torch.device, world_size: int) -> str:
    """``memory.cache``, or for "auto": the training device when the projected bank fits a
    quarter of its memory (CUDA) or ``memory.cache_gb``; else, on a CPU device, the process's
    own copy when it fits half of this process's share of the available RAM (or the cap); else one
    copy per node in shared memory ("node") when it fits half of the free space of ``/dev/shm`` and
    of the available RAM; else "none" (read from the shards).

    Returns: "device", "cpu", "node" or "none".
    """
    m = cfg.memory
    if m.cache != "auto":
        return m.cache
    need, cap = projected_bank_bytes(cfg, world_size), m.cache_gb * 2**30
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if need <= min(cap or 0.25 * total, free):
            return "device"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    available = psutil.virtual_memory().available
    if device.type == "cpu" and need <= (cap or 0.5 * available / max(1, local)):
        return "device"
    try:
        shm_free = shutil.disk_usage(default_shm_dir()).free
    except OSError:
        shm_free = 0
    if need <= (cap or 0.5 * min(shm_free, available)):
        return "node"
    return "none"
