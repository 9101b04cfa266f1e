"""The ImageNet recipes: a torchvision ResNet-50 teacher distilled into ResNet-50, ResNet-18 or
MobileNetV2 at 224 px, and the seconds-long CPU smoke run of the same code path."""

from __future__ import annotations

import dataclasses

from ..config import NayerConfig, StudentConfig, TeacherConfig
from .published import published_distill, published_eval, published_run, published_synthesis
from .registry import preset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_r50"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@preset("imagenet_r50")
def imagenet_r50() -> NayerConfig:
    """ImageNet (224 px, 1000 classes): torchvision ResNet-50 teacher -> ResNet-50 student, the
    published ImageNet generator (docs/method.md) and E = 300 (+ 20 warm-up) epochs, precision by
    capability (bf16 and channels_last on a bf16 GPU). Sizes are *per process*: each process
    synthesises batches of 256 covering a rotating slice of the 1000 classes
    (``nayer_scale.synthesis.labels``) and trains the student on 256 memory-bank images per step
    (global batch 256 x processes).

    Published: the teacher/student pair, the generator, E, the common loss weights and the 1/8
    roll jitter + flip of the synthesis augmentation. Not published for ImageNet, chosen here: 60
    generator steps per batch and 0.1 student lr (the Tiny-ImageNet values), 2 batches per epoch
    (10 in warm-up) and 500 student steps per epoch, random-resized-crop (0.08-1) + flip for the
    student (torchvision's ImageNet train transform). The LTE encoder is the offline MiniLM (the
    paper uses CLIP ViT-B/32: ``lte.encoder=clip:openai/clip-vit-base-patch32``). No eval set by
    default (data-free); pass ``eval.dataset=imagenet eval.root=/path/to/val`` to report top-1.
    The whole history would be ~1.6M images (247 GB) with 8 processes: the newest 300k are kept
    (45 GB, one copy per node in shared memory), as the paper's Table 5 allows. ``run.resume`` is
    on: after a preemption the same command continues the run.
    """
    cfg = NayerConfig(
        teacher=TeacherConfig(
            arch="tv_resnet50",
            weights="torchvision:resnet50.IMAGENET1K_V1",
            class_names="imagenet",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            in_channels=3,
            image_size=224,
        ),
        student=StudentConfig(arch="tv_resnet50"),
        synthesis=published_synthesis(batch_size=256, num_generator_steps=60, roll_jitter=224 // 8),
        distill=published_distill(batch_size=256, steps_per_epoch=500, lr=0.1, resized_crop_scale=(0.08, 1.0)),
        eval=published_eval(every_epochs=10),  # 50,000 val images: not every epoch
        run=published_run("runs/imagenet_r50", epochs=320, grid_per_class=1, resume=True),
    )
    cfg.memory.max_images = 300_000
    return cfg


@preset("imagenet_r50_r18", parent="imagenet_r50")
def imagenet_r50_r18(cfg: NayerConfig) -> NayerConfig:
    """``imagenet_r50`` with a torchvision ResNet-18 student."""
    cfg.student.arch, cfg.run.run_dir = "tv_resnet18", "runs/imagenet_r50_r18"
    return cfg


@preset("imagenet_r50_mbv2", parent="imagenet_r50")
def imagenet_r50_mbv2(cfg: NayerConfig) -> NayerConfig:
    """``imagenet_r50`` with a torchvision MobileNetV2 student (student lr 0.05)."""
    cfg.student.arch, cfg.distill.lr, cfg.run.run_dir = "tv_mobilenet_v2", 0.05, "runs/imagenet_r50_mbv2"
    return cfg


@preset("imagenet_r50_smoke", parent="imagenet_r50")
def imagenet_r50_smoke(cfg: NayerConfig) -> NayerConfig:
    """``imagenet_r50`` shrunk to seconds on a CPU: random-weight ResNet-50 teacher and student,
    32 px, synthesis batches of 16 (rotating class slices), 2 generator steps, 3 epochs (1 warm-up),
    the weight-free hashed text encoder, the memory bank read straight from its shards. The code
    path of the full preset, for tests and for checking a machine before a long run."""
    cfg.teacher.weights, cfg.teacher.image_size = "", 32
    s = cfg.synthesis
    s.batch_size, s.num_generator_steps, s.batches_per_epoch, s.warmup_batches_per_epoch = 16, 2, 2, 1
    s.generator_width, s.noise_dim, s.roll_jitter = 8, 32, 32 // 8
    cfg.lte.encoder = "hashed:64"
    cfg.distill.batch_size, cfg.distill.steps_per_epoch = 8, 3
    cfg.eval.batch_size = 16
    cfg.memory.cache = "none"
    cfg.run = dataclasses.replace(
        cfg.run, run_dir="runs/imagenet_r50_smoke", epochs=3, warmup_epochs=1, safe_point_every_steps=1
    )
    return cfg
