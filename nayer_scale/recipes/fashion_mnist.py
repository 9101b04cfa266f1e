"""The Fashion-MNIST recipes: the CPU demo (the schema's defaults), its baselines and its
data-free quantization runs (paper Table 3 at small scale)."""

from __future__ import annotations

import dataclasses

from ..config import NayerConfig, QuantizationConfig
from .baselines import as_deepinversion, as_fast, described
from .registry import preset

__all__ = ["fashion_mnist"]


@preset("fashion_mnist")
def fashion_mnist() -> NayerConfig:
    """CPU demo: the shipped ResNet-20 teacher -> ResNet-8 student on Fashion-MNIST (28 px, 1
    channel), sized so that the README's first command finishes within 15 minutes on 2 CPU cores
    without native bf16 (fp32), student >= 88% top-1 (docs: measured results). These values are the
    dataclass defaults of ``nayer_scale.config``.

    Chosen by measurement on a 2-core AVX2 EPYC (benchmarks/results/fashion_mnist_tuning.md): one
    synthesis batch of 200 per epoch (two in the one warm-up epoch), 20 generator steps each, one
    generator for the whole run (``generator_life_epochs`` = epochs = 10; the noisy layer is still
    re-initialised for every batch), generator width 32, crop padding 2, and many small student
    steps (720 of batch 32 per epoch, lr 0.1), the real test split evaluated every other epoch.
    Published: the loss weights, BN momentum, generator and noisy layer, KD temperature 20, the
    cosine schedule. More generator steps per image beat more images, and smaller student batches
    with more steps beat larger ones, at equal wall time. ``run.resume`` is on: running the same
    command again continues a stopped run, or reports a finished one."""
    return NayerConfig()


@preset("fashion_mnist_deepinversion", parent="fashion_mnist")
def fashion_mnist_deepinversion(cfg: NayerConfig) -> NayerConfig:
    """DeepInversion on the Fashion-MNIST CPU demo: 200 pixel steps per batch instead of the
    published 2000, so that a run that converges fits a CPU session (see benchmarks/gpu_hours.py)."""
    return as_deepinversion(cfg, steps=200)


preset("fashion_mnist_fast", parent="fashion_mnist")(
    described(
        as_fast,
        "Fast (Fang et al., AAAI 2022) on the Fashion-MNIST CPU demo: a meta-learned generator, 5 steps per batch. "
        "See ``as_fast``.",
    )
)


@preset("fashion_mnist_w4a4", parent="fashion_mnist")
def fashion_mnist_w4a4(cfg: NayerConfig) -> NayerConfig:
    """Data-free quantization with NAYER (paper Table 3): the student is the teacher's ResNet-20,
    copied from its weights, BatchNorm folded, W4A4 fake-quantized (first and last layers at 8 bits;
    ``nayer_scale.quantization``), trained by the same NAYER loop at student lr 1e-4 (the folded,
    quantized network diverges at the demo's 0.1: benchmarks/quantization.py). Other bit widths:
    ``student.quantization.weight_bits=8 student.quantization.activation_bits=8`` etc. The quantized
    export is ``student_quantized.safetensors``."""
    cfg.student = dataclasses.replace(
        cfg.student, arch=cfg.teacher.arch, quantization=QuantizationConfig(weight_bits=4, activation_bits=4)
    )
    cfg.distill.lr, cfg.distill.lr_min = 1e-4, 1e-6
    cfg.run.run_dir = "runs/fashion_mnist_w4a4"
    return cfg


@preset("fashion_mnist_w4a4_zeroq", parent="fashion_mnist_w4a4")
def fashion_mnist_w4a4_zeroq(cfg: NayerConfig) -> NayerConfig:
    """The ZeroQ-style baseline (Cai et al., CVPR 2020) of ``fashion_mnist_w4a4`` on the same
    harness: "distilled data" by BN-statistics matching of the pixels (DeepInversion, 200 pixel
    steps per batch, without its cross-entropy and adversarial terms), the same quantized student
    and KD fine-tuning. PTQ and the real-data bound (not data-free) are rows of
    benchmarks/quantization.py: they are not training runs of this loop."""
    cfg = as_deepinversion(cfg, steps=200)
    cfg.synthesis.ce_loss_weight, cfg.synthesis.adv_loss_weight = 0.0, 0.0
    cfg.run.run_dir = "runs/fashion_mnist_w4a4_zeroq"
    return cfg
