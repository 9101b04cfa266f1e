"""What a run reports and leaves: the start-up line, each epoch's sample grid, the student files and
their metadata, summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..models.io import save_model
from ..quantization.student import export_student
from ..visualize import save_sample_grid
from .trackers import global_step

__all__ = [
    "AGREEMENT_SOURCE",
    "run_banner",
    "save_epoch_samples",
    "student_metadata",
    "save_student_files",
    "build_summary",
]

AGREEMENT_SOURCE = (
    "top-1 agreement of student and teacher on one extra synthesis batch per process, made "
    "without the adversarial term after training and never stored in the memory bank"
)


def run_banner(cfg, components, world_size: int, device_kind: str, launched_with: list[str]) -> str:
    """The one line a run prints once it is set up: method, processes, device, threads, precision
    (and why), kernel backend, student strategy, memory-bank cache, compile, launcher settings."""
    c = components
    return (
        f"nayer-scale: {cfg.synthesis.method} synthesis, {world_size} process(es) on {device_kind} "
        f"({torch.get_num_threads()} CPU threads each), precision={c.precision.mixed_precision}, "
        f"channels_last={c.precision.channels_last} ({c.precision.reason}), kernels (BN-statistics loss, "
        f"noisy-layer re-init): {c.kernel_backend}, student {c.engine.name}, memory-bank cache: {c.memory.cache}"
        + (f", torch.compile ({cfg.run.compile_backend})" if cfg.run.compile else "")
        + "".join(f"; {line}" for line in launched_with)
    )


def save_epoch_samples(trainer, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
    """The epoch's last synthesis batch as a grid: ``samples/epoch-EEEE.png`` in the run folder
    (``visualize.save_sample_grid``, ``run.grid_per_class`` images per class) and the trackers'
    "samples" image at the epoch's first step. Called by process 0 only.

    Args:
        trainer: the run (``NayerTrainer``).
        images: (B, C, H, W) float32 in [0, 1]. labels: (B,) int64 class indices.
        epoch: the epoch the batch belongs to.

    Raises:
        OSError: the image could not be written (``nayer_scale.storage.DiskFullError`` on a full disk).
    """
    t = trainer
    path = t.run_dir / "samples" / f"epoch-{epoch:04d}.png"
    grid = save_sample_grid(images, labels, t.num_classes, path, t.cfg.run.grid_per_class)
    t.trackers.log_image("samples", grid, global_step(epoch, 0, t.cfg.distill.steps_per_epoch))


def student_metadata(cfg, class_names: list[str]) -> dict[str, str]:
    """The string metadata stored in ``student.safetensors`` (``models.io.save_model``): architecture,
    number of classes, input channels, image size (pixels), normalisation, class names, the config."""
    t = cfg.teacher
    return {
        "arch": cfg.student.arch,
        "num_classes": str(len(class_names)),
        "in_channels": str(t.in_channels),
        "image_size": str(t.image_size),
        "mean": json.dumps(t.mean),
        "std": json.dumps(t.std),
        "class_names": json.dumps(class_names),
        "config": cfg.to_json(),
    }


def save_student_files(cfg, student: nn.Module, run_dir: Path, class_names: list[str]) -> None:
    """Write ``run_dir/student.safetensors`` (``models.io.save_model``, with ``student_metadata``)
    and, when ``student.quantization`` is enabled, ``student_quantized.safetensors`` (integer
    weights, scales and activation ranges: ``quantization.student.export_student``). Process 0 only.

    Raises:
        DiskFullError: the disk filled while writing (no partial file is left).
    """
    meta = student_metadata(cfg, class_names)
    save_model(student, run_dir / "student.safetensors", meta)
    if cfg.student.quantization.enabled:
        export_student(cfg, student, run_dir / "student_quantized.safetensors", meta)


def build_summary(
    cfg,
    *,
    teacher_top1: float | None,
    student_top1: float | None,
    agreement: float,
    eval_images: int,
    precision,
    times: dict,
    world_size: int,
    device: torch.device,
    device_kind: str,
    memory_size: int,
) -> dict:
    """summary.json of a finished run: top-1 of teacher and student (fractions in [0, 1], None
    without an evaluation set), the held-out agreement, wall and per-phase seconds, device-hours
    (``RunClock.accounting``: ``times``), the precision and where the run ran."""
    return {
        "method": cfg.synthesis.method,
        "teacher_top1": teacher_top1,
        "student_top1": student_top1,
        "student_agreement": agreement,
        "student_agreement_source": AGREEMENT_SOURCE,
        "eval_images": eval_images,
        "precision": precision.to_dict(),
        "wall_s": times["elapsed_s"],
        **{f"{phase}_s": sec for phase, sec in times["phases_s"].items()},
        "device_hours": times["device_hours"],
        "device_hours_unit": times["device_hours_unit"],
        "synthesis_device_hours": times["synthesis_s"] * world_size / 3600.0,
        "epochs": cfg.run.epochs,
        "num_processes": world_size,
        "device": str(device),
        "device_kind": device_kind,
        "memory_size": memory_size,
    }
