"""Process set-up: the Accelerator, CPU threads. Nothing here knows the method."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

from ..extras import require
from ..precision import resolve_precision
from .trackers import tracker_names

__all__ = ["build_accelerator", "set_cpu_threads"]


def build_accelerator(run) -> Accelerator:
    """The Accelerator of a run (``run``: the RunConfig): CPU forcing, process group, trackers
    (``run.log_with``; TensorBoard writes under ``<run_dir>/tensorboard/``).

    Process groups use gloo when there is no GPU (what DeepSpeed on CPU needs too). Under
    ``accelerate launch --use_deepspeed`` the DeepSpeed plugin comes from the launcher; its "auto"
    micro-batch size is filled in by the student engine (there is no DataLoader to infer it from).

    Autocast and loss scaling are the trainer's own (``nayer_scale.precision``): accelerate's fp16
    needs a GPU, and synthesis needs a scaler per optimised quantity. So the Accelerator runs with
    mixed_precision "no", except under DeepSpeed, whose engine takes the (resolved) precision from it.
    It never compiles (``dynamo_backend="no"``): the student engine compiles the student with
    ``run.compile``. accelerate keeps its state once per process, so a second run in the same
    process with another compile setting would otherwise silently keep the first one's.
    ``accelerate launch`` settings reach ``run`` through ``training.launcher`` first.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # a single process has no process group
    cpu = run.cpu or not torch.cuda.is_available()
    kwargs = [InitProcessGroupKwargs(backend="gloo")] if distributed and cpu else []
    mixed = "no"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        require("deepspeed", "deepspeed", "accelerate launch --use_deepspeed")  # one line, not accelerate's traceback
        mixed = resolve_precision(run.mixed_precision, run.channels_last, "cpu" if cpu else "cuda").mixed_precision
    trackers = tracker_names(run.log_with)  # a tracker that is not installed is named before any work
    project = ProjectConfiguration(project_dir=str(run.run_dir), logging_dir=str(Path(run.run_dir) / "tensorboard"))
    return Accelerator(
        mixed_precision=mixed,
        cpu=run.cpu,
        kwargs_handlers=kwargs,
        log_with=trackers or None,
        project_config=project,
        dynamo_backend="no",
    )


def set_cpu_threads(device: torch.device, cpu_threads: int, num_processes: int) -> None:
    """Share this node's cores among its processes (``cpu_threads``: 0 = automatic). ``accelerate
    launch`` sets OMP_NUM_THREADS=1 unless told otherwise, which halves the speed of a single CPU
    process on a 2-core machine."""
    if device.type != "cpu":
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", num_processes))
    torch.set_num_threads(cpu_threads or max(1, (os.cpu_count() or 1) // max(1, local)))
