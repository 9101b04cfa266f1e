"""The start-up disk check: what a run will write, against the free space of its file system.

A run writes its memory bank (uint8 images, one shard per synthesis batch), ``run.keep_checkpoints``
complete checkpoints (student weights and optimizer state, each process's synthesis state), sample
grids, metrics and the exported student. ``estimate_run_bytes`` bounds that from the config and the
built models; ``check_free_space`` warns (it does not refuse: the estimate is an upper bound, and
space may be freed while the run goes) when the file system of ``run.run_dir`` has less free space
than the part of the estimate not yet written. A full disk during the run is still survived
(``storage.DiskFullError``: the file named, nothing half-written, the same command resumes).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["DiskEstimate", "check_free_space", "estimate_run_bytes", "state_nbytes"]

_SHARD_OVERHEAD = 1.02  # tar headers, labels and metadata per image: measured 1-2% on 32 px raw shards


@dataclass(frozen=True)
class DiskEstimate:
    """Upper bound of the bytes a run writes: memory bank at its largest, the kept checkpoints."""

    memory_bank: int
    checkpoints: int
    other: int

    @property
    def total(self) -> int:
        return self.memory_bank + self.checkpoints + self.other


def _nbytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def state_nbytes(state) -> int:
    """Bytes of every tensor in a (nested dict / list) state."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    return 0


def estimate_run_bytes(cfg, world_size: int, student: nn.Module, synthesis_state: dict) -> DiskEstimate:
    """Bytes a run of ``cfg`` on ``world_size`` processes writes, at most.

    Memory bank: every synthesis batch of every process, as raw uint8 (C, H, W) images (png / webp
    are smaller: an upper bound), capped by ``memory.max_images`` plus the shards that the kept
    checkpoints still reference (one epoch's worth per kept checkpoint). Checkpoints:
    ``run.keep_checkpoints`` + 1 (a new one is complete before the oldest goes), each the student's
    weights and buffers x 2 (weights, SGD momentum) plus, per process, the synthesis state
    (``synthesis_state``: the synthesizer's ``state_dict()``, generator weights and optimizer
    moments). Other: sample grids, metrics, the exported student (the student once more).

    Args:
        student: the student model (unwrapped; its parameters and buffers are counted).
        synthesis_state: this process's synthesizer state dict (every process has the same size).
    """
    s, r, t = cfg.synthesis, cfg.run, cfg.teacher
    per_image = t.in_channels * t.image_size * t.image_size * _SHARD_OVERHEAD
    per_epoch = s.batches_per_epoch * s.batch_size * world_size
    images = (
        r.warmup_epochs * s.warmup_batches_per_epoch * s.batch_size * world_size
        + (r.epochs - r.warmup_epochs) * per_epoch
    )
    if cfg.memory.max_images:
        images = min(images, cfg.memory.max_images + r.keep_checkpoints * per_epoch)
    student_bytes = _nbytes(student)
    checkpoint = 2 * student_bytes + state_nbytes(synthesis_state) * world_size
    grids = r.epochs * (3 * 1024 * 1024)  # a PNG grid per epoch, generously
    return DiskEstimate(
        memory_bank=int(images * per_image),
        checkpoints=(r.keep_checkpoints + 1) * checkpoint,
        other=student_bytes + grids,
    )


def _written(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) if run_dir.is_dir() else 0


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_free_space(run_dir: str | Path, estimate: DiskEstimate) -> str | None:
    """A one-line warning when the file system of ``run_dir`` (or of its nearest existing parent)
    has less free space than ``estimate`` minus what ``run_dir`` already holds (a resumed run);
    None when it has enough."""
    run_dir = Path(run_dir)
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    needed = estimate.total - _written(run_dir)
    if free >= needed:
        return None
    return (
        f"warning: {run_dir} may run out of disk space: this run writes up to {_gib(estimate.total)} "
        f"(memory bank {_gib(estimate.memory_bank)}, checkpoints {_gib(estimate.checkpoints)}), "
        f"{_gib(max(needed, 0))} of it still to come, and its file system has {_gib(free)} free. "
        "Free space, set memory.max_images (a bounded memory bank), fewer run.keep_checkpoints, or "
        "another run.run_dir; a run that fills the disk stops with the file named and resumes once "
        "space is freed."
    )
