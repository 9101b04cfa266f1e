"""The rows of the data-free quantization comparison (NAYER Table 3), on one harness:

- **PTQ**: the quantized copy of the teacher calibrated (min-max or percentile) on NAYER's
  synthetic images, no training (``calibrate``).
- **ZeroQ-style** (Cai et al., CVPR 2020): "distilled data" made by matching the teacher's BN
  statistics with the pixels themselves: the DeepInversion synthesizer (``as_deepinversion``)
  without the cross-entropy term, and without the adversarial (student-competition) term, which
  ZeroQ does not have either (``zeroq_config``); used for calibration and for the same KD
  fine-tuning.
- **NAYER**: the memory bank of a NAYER run (``nayer_bank_config``), calibration and KD
  fine-tuning on it (``kd_finetune``: the student engine's KD step, unchanged).
- **Real data (NOT data-free)**: calibration and the same KD fine-tuning on real training images,
  the upper bound.

``kd_finetune`` drives ``nayer_scale.training.StudentEngine`` (SGD, cosine schedule, the KD loss
and augmentation of a NAYER run) on any image source, so every fine-tuned row trains the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable

import torch
from torch import nn

from ..config import NayerConfig, QuantizationConfig
from ..recipes import as_deepinversion, get_preset

__all__ = ["nayer_bank_config", "zeroq_config", "kd_finetune", "normalizer", "top1"]


def nayer_bank_config(
    bits: str, run_dir: str, epochs: int, kd_steps: int, lr: float, base: str = "fashion_mnist"
) -> NayerConfig:
    """A NAYER run whose student is the ``bits`` quantized copy of the teacher (the adversarial
    term is computed against it), ``epochs`` epochs (1 warm-up) of ``kd_steps`` student steps at
    ``lr``, no evaluation set; its memory bank is the synthetic data of the NAYER rows."""
    cfg = get_preset(base)
    cfg.student = dataclasses.replace(
        cfg.student, arch=cfg.teacher.arch, quantization=QuantizationConfig.from_name(bits)
    )
    cfg.distill.lr, cfg.distill.lr_min, cfg.distill.steps_per_epoch = lr, min(cfg.distill.lr_min, lr), kd_steps
    cfg.synthesis.generator_life_epochs = max(epochs, 1)
    cfg.eval.dataset = "none"
    cfg.run = dataclasses.replace(
        cfg.run, run_dir=run_dir, epochs=epochs, warmup_epochs=min(1, epochs - 1), resume=True, progress=False
    )
    return cfg.validate()


def zeroq_config(
    bits: str, run_dir: str, batches: int, pixel_steps: int, lr: float, base: str = "fashion_mnist"
) -> NayerConfig:
    """ZeroQ-style distilled data on the same harness: DeepInversion pixel optimisation
    (``as_deepinversion`` with ``pixel_steps`` Adam steps per batch) with ``ce_loss_weight`` 0 and
    ``adv_loss_weight`` 0, i.e. BN-statistics matching (plus DeepInversion's tiny image priors);
    ``batches`` epochs of one synthesis batch each; the run's own student steps are minimal (one per
    epoch): only its memory bank is used."""
    cfg = as_deepinversion(get_preset(base), steps=pixel_steps)
    cfg.student = dataclasses.replace(
        cfg.student, arch=cfg.teacher.arch, quantization=QuantizationConfig.from_name(bits)
    )
    cfg.synthesis.ce_loss_weight, cfg.synthesis.adv_loss_weight = 0.0, 0.0
    cfg.distill.lr, cfg.distill.lr_min, cfg.distill.steps_per_epoch = lr, min(cfg.distill.lr_min, lr), 1
    cfg.eval.dataset = "none"
    cfg.run = dataclasses.replace(
        cfg.run, run_dir=run_dir, epochs=batches, warmup_epochs=0, resume=True, progress=False
    )
    return cfg.validate()


def normalizer(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """[0, 1] pixels (N, C, H, W) -> (x - mean) / std per channel (the teacher's input)."""
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return lambda x: (x - m.to(x.device)) / s.to(x.device)


@torch.no_grad()
def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 250) -> float:
    """Top-1 accuracy (fraction) of ``model`` (eval mode) on normalised ``images`` (N, C, H, W)."""
    model.eval()
    correct = sum(
        int((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
        for i in range(0, len(images), batch_size)
    )
    return correct / len(images)


def kd_finetune(
    student: nn.Module,
    teacher: nn.Module,
    cfg: NayerConfig,
    sample: Callable[[int, torch.Generator], torch.Tensor],
    steps: int,
    accelerator,
    seed: int = 0,
    schedule_chunks: int = 10,
) -> float:
    """``steps`` KD steps of ``StudentEngine`` (``cfg.distill``: SGD, lr, temperature, augmentation)
    on batches ``sample(batch_size, generator)`` of [0, 1] images (N, C, H, W); the cosine schedule
    spans ``schedule_chunks`` chunks of the steps. fp32, no channels_last (CPU-friendly). The
    student is trained in place (left in eval mode). Returns the wall seconds.

    Raises:
        ValueError: ``steps`` < 1.
    """
    from ..precision import resolve_precision
    from ..training.student import StudentEngine

    if steps < 1:
        raise ValueError(f"kd_finetune needs steps >= 1, got {steps}")
    start = time.perf_counter()
    cfg = copy.deepcopy(cfg)
    chunks = max(1, min(schedule_chunks, steps))
    cfg.run = dataclasses.replace(cfg.run, epochs=chunks, warmup_epochs=0, compile=False)
    precision = resolve_precision("no", "false", accelerator.device)
    engine = StudentEngine(student, teacher, cfg, accelerator, precision)
    rng = torch.Generator(device=accelerator.device).manual_seed(seed)
    engine.train()
    per_chunk = -(-steps // chunks)
    for step in range(steps):
        engine.step(sample(cfg.distill.batch_size, rng), rng)
        if (step + 1) % per_chunk == 0:
            engine.end_epoch(lambda tensors: None)
    engine.unwrapped.eval()
    return time.perf_counter() - start
