"""Builds the components of a run from its config, in the order that fixes every random draw.

``build_components(cfg, accelerator)`` returns a ``Components``: the trainer receives them (or a
test / benchmark passes its own) and only orchestrates. Every input check happens here, before
anything is written: class names, teacher file and output width, evaluation data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from nayer_kernels import select_backend

from ..augment import BatchAugment
from ..config import ConfigError, NayerConfig
from ..data import build_eval_source, check_eval_data
from ..evaluation import Evaluator, SyntheticProbe
from ..extras import MissingExtraError
from ..lte import load_or_build_lte
from ..memory import MemoryBank, choose_memory_cache
from ..models import build_model
from ..models.io import read_metadata
from ..models.sources import build_teacher, resolve_teacher
from ..precision import Precision, resolve_precision
from ..quantization.student import quantized_student
from ..synthesis import LabelSampler, SynthesisContext, Synthesizer, build_synthesizer
from ..synthesis.bn_hooks import BNStatsHooks
from .checkpoint import CheckpointManager
from .clock import RunClock
from .logger import MetricsLogger
from .rng import RNGStreams
from .setup import set_cpu_threads
from .student import StudentEngine
from .trackers import Trackers, tracker_names

__all__ = ["Components", "build_components"]


@dataclass
class Components:
    """Everything a run is made of (see each type's module)."""

    accelerator: Accelerator
    precision: Precision
    kernel_backend: str  # "triton" or "reference", resolved once per run
    class_names: list[str]
    rngs: RNGStreams
    clock: RunClock
    teacher: nn.Module
    hooks: BNStatsHooks
    lte: torch.Tensor | None
    synthesizer: Synthesizer
    labels: LabelSampler
    engine: StudentEngine
    evaluator: Evaluator
    probe: SyntheticProbe
    memory: MemoryBank
    checkpoints: CheckpointManager
    logger: MetricsLogger
    trackers: Trackers


def check_class_names(weights: str, class_names: list[str], spec: str) -> None:
    """Refuse class names that differ from those recorded with the teacher's weights file.

    Raises:
        ConfigError: naming both lists and what to change.
    """
    if not weights or not str(weights).endswith(".safetensors") or not Path(weights).expanduser().is_file():
        return
    recorded = read_metadata(weights).get("class_names")
    if recorded and json.loads(recorded) != class_names:
        raise ConfigError(
            f"teacher.class_names={spec!r} gives {class_names}, but {weights} was trained on "
            f"{json.loads(recorded)}: the label texts would not match the teacher's classes. "
            "Set teacher.class_names to the recorded names (a dataset key or a .txt file)."
        )


def check_memory_config(cfg: NayerConfig, world_size: int) -> None:
    """Refuse memory-bank settings that cannot work, before any work.

    Raises:
        ConfigError: ``memory.max_images`` gives a process less than one synthesis batch, or a
            png/webp encoding for images that do not have 1 or 3 channels.
    """
    m, s = cfg.memory, cfg.synthesis
    if m.max_images and m.max_images // world_size < s.batch_size:
        raise ConfigError(
            f"memory.max_images={m.max_images} leaves each of {world_size} process(es) "
            f"{m.max_images // world_size} images, less than one synthesis batch "
            f"(synthesis.batch_size={s.batch_size}): set memory.max_images >= {s.batch_size * world_size} "
            "or 0 (unbounded)"
        )
    if m.encoding != "raw" and cfg.teacher.in_channels not in (1, 3):
        raise ConfigError(
            f"memory.encoding={m.encoding} stores 1- or 3-channel images, the teacher takes "
            f"{cfg.teacher.in_channels}: set memory.encoding=raw"
        )


def _build_teacher(
    cfg: NayerConfig, acc: Accelerator, num_classes: int, backend: str
) -> tuple[nn.Module, BNStatsHooks]:
    t = cfg.teacher
    with acc.main_process_first():  # a hub download happens once, the others read the cache
        teacher = build_teacher(
            t.arch, t.weights or None, num_classes, t.in_channels, require_weights=bool(t.weights)
        ).to(acc.device)
    with torch.no_grad():
        out = teacher(torch.zeros(2, t.in_channels, t.image_size, t.image_size, device=acc.device))
    if out.shape != (2, num_classes):
        raise ValueError(
            f"teacher output on {t.image_size}px input has shape {tuple(out.shape)}, expected (2, {num_classes})"
        )
    return teacher, BNStatsHooks(
        teacher,
        cfg.synthesis.bn_momentum,
        cfg.synthesis.first_bn_multiplier,
        backend,
        scope=cfg.synthesis.bn_stats_scope,
    )  # "global": one all-reduce per generator step


def _build_synthesizer(
    cfg: NayerConfig, acc: Accelerator, teacher, hooks, class_names, precision, rng, backend, average
) -> tuple[torch.Tensor | None, Synthesizer]:
    s, t = cfg.synthesis, cfg.teacher
    lte = None
    if s.method == "nayer" and s.nayer.generator_input.startswith("lte"):  # only these need a text encoder
        with acc.main_process_first():  # the main process fills the cache first
            cache = cfg.lte.cache_dir
            lte = load_or_build_lte(
                class_names,
                cfg.lte.encoder,
                cfg.lte.template,
                os.path.expanduser(cache) if cache else None,
                log=acc.print,
            ).to(acc.device)
    augment = BatchAugment(
        t.mean, t.std, s.crop_padding, s.flip, roll=s.roll_jitter, resized_crop=s.resized_crop_scale or None
    ).to(acc.device)
    shared = s.method == "nayer" and s.nayer.shared_generator and acc.num_processes > 1
    context = SynthesisContext(
        teacher=teacher,
        hooks=hooks,
        augment=augment,
        config=s,
        precision=precision,
        rng=rng,
        device=acc.device,
        image_shape=(t.in_channels, t.image_size, t.image_size),
        run_seed=cfg.run.seed,
        rank=acc.process_index,
        all_reduce=average if shared else None,
    )
    return lte, build_synthesizer(context, lte, len(class_names), t.mean, t.std, backend)


def _check_inputs(cfg: NayerConfig, acc: Accelerator) -> list[str]:
    """Resolve the teacher into ``cfg`` and check class names, evaluation data and memory settings.

    Returns:
        The class names (one per teacher output).
    """
    resolved = resolve_teacher(cfg)  # hf:<hub id or folder>: teacher.* (and eval.resize) from the model folder
    cfg.teacher, cfg.eval.resize = resolved.teacher, resolved.eval_resize  # what config.json / run.yaml record
    t, class_names = cfg.teacher, resolved.class_names
    check_class_names(t.weights, class_names, t.class_names)
    check_eval_data(cfg.eval, len(class_names), t.in_channels, class_names)  # fail now, not after a teacher download
    check_memory_config(cfg, acc.num_processes)
    return class_names


def _select_kernel_backend(kernels: str) -> str:
    """``"triton"`` on CUDA, else the PyTorch ``"reference"`` (or as forced); MissingExtraError without triton."""
    try:
        return select_backend(kernels)
    except ModuleNotFoundError as err:  # run.kernels=triton (or NAYER_KERNELS=triton) without triton
        raise MissingExtraError(str(err)) from err


def _build_student(cfg: NayerConfig, teacher: nn.Module, num_classes: int, device) -> nn.Module:
    # student.quantization bit widths: a fake-quantized copy of the teacher (no random draw), else a fresh model
    return (
        quantized_student(cfg.student, teacher)
        if cfg.student.quantization.enabled
        else build_model(cfg.student.arch, num_classes, cfg.teacher.in_channels)
    ).to(device)


def _build_labels(cfg: NayerConfig, acc: Accelerator, num_classes: int, generator) -> LabelSampler:
    s = cfg.synthesis
    return LabelSampler(
        s.batch_size,
        num_classes,
        cfg.run.warmup_epochs,
        s.warmup_batches_per_epoch,
        s.batches_per_epoch,
        acc.process_index,
        acc.num_processes,
        generator,
        acc.device,
    )


def _build_memory(cfg: NayerConfig, acc: Accelerator, run_dir: Path, show: bool) -> MemoryBank:
    m, device = cfg.memory, acc.device
    return MemoryBank(
        run_dir / "memory",
        rank=acc.process_index,
        world_size=acc.num_processes,
        device=device,
        cache=choose_memory_cache(cfg, device, acc.num_processes),
        progress=show,
        max_images=m.max_images,
        retirement=m.retirement,
        encoding=m.encoding,
        quality=m.webp_quality if m.encoding == "webp_lossy" else None,
        seed=cfg.run.seed,
    )


def build_components(cfg: NayerConfig, acc: Accelerator, average, start: float | None = None) -> Components:
    """All components of a run of ``cfg`` (validated) on ``acc``'s device.

    Args:
        average: in-place mean over processes of a list of tensors (shared generator, ZeRO BN buffers).
        start: ``time.perf_counter()`` at the start of the session (the clock's zero).
    Raises:
        ConfigError, FileNotFoundError, nayer_scale.models.io.TeacherLoadError, ValueError.
    """
    class_names = _check_inputs(cfg, acc)
    run, t, device, num_classes = cfg.run, cfg.teacher, acc.device, len(class_names)
    precision = resolve_precision(run.mixed_precision, run.channels_last, device)  # by capability, once per run
    set_cpu_threads(device, run.cpu_threads, acc.num_processes)
    rngs = RNGStreams(run.seed, acc.process_index, device)
    backend = _select_kernel_backend(run.kernels)
    # The order below fixes which random draws initialise which model: keep it.
    teacher, hooks = _build_teacher(cfg, acc, num_classes, backend)
    student = _build_student(cfg, teacher, num_classes, device)
    if precision.channels_last:
        teacher.to(memory_format=torch.channels_last)
    lte, synthesizer = _build_synthesizer(
        cfg, acc, teacher, hooks, class_names, precision, rngs.generator, backend, average
    )
    engine = StudentEngine(student, teacher, cfg, acc, precision)
    eval_source = build_eval_source(
        cfg.eval, t.in_channels, t.image_size, num_classes, acc.process_index, acc.num_processes, device, class_names
    )  # checks the data fits before anything is written
    labels = _build_labels(cfg, acc, num_classes, rngs.generator)
    show = run.progress and acc.is_local_main_process
    reduce_sum = lambda x: acc.reduce(x, reduction="sum")  # noqa: E731
    run_dir = Path(run.run_dir)
    memory = _build_memory(cfg, acc, run_dir, show)
    trackers = Trackers(acc, tracker_names(run.log_with), run_dir)
    return Components(
        accelerator=acc,
        precision=precision,
        kernel_backend=backend,
        class_names=class_names,
        rngs=rngs,
        clock=RunClock(device, start),
        teacher=teacher,
        hooks=hooks,
        lte=lte,
        synthesizer=synthesizer,
        labels=labels,
        engine=engine,
        evaluator=Evaluator(eval_source, engine.augment.normalize, precision, device, reduce_sum, show),
        probe=SyntheticProbe(teacher, engine.augment.normalize, precision, cfg.eval.batch_size, num_classes),
        memory=memory,
        checkpoints=CheckpointManager(run_dir / "checkpoints", acc, run.keep_checkpoints),
        logger=MetricsLogger(run_dir, acc, trackers, cfg.distill.steps_per_epoch),
        trackers=trackers,
    )
