"""The CIFAR-10 / CIFAR-100 and Tiny-ImageNet recipes: the published NAYER hyper-parameters
(docs/method.md) and their DeepInversion / Fast baselines."""

from __future__ import annotations

from ..config import NayerConfig, StudentConfig, TeacherConfig
from .baselines import register_baselines
from .published import published_distill, published_eval, published_run, published_synthesis
from .registry import preset

__all__ = ["cifar10", "cifar100", "tiny_imagenet"]


@preset("cifar10")
def cifar10() -> NayerConfig:
    """CIFAR-10, wrn40_2 -> wrn16_2, published NAYER hyper-parameters (E=100 -> 120 epochs)."""
    return NayerConfig(
        teacher=TeacherConfig(
            arch="wrn40_2",
            weights="",
            class_names="cifar10",
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2023, 0.1994, 0.2010),
            in_channels=3,
            image_size=32,
        ),
        student=StudentConfig(arch="wrn16_2"),
        synthesis=published_synthesis(),
        distill=published_distill(),
        eval=published_eval(),
        run=published_run("runs/cifar10"),
    )


register_baselines("cifar10")


@preset("cifar100", parent="cifar10")
def cifar100(cfg: NayerConfig) -> NayerConfig:
    """CIFAR-100, wrn40_2 -> wrn16_2, published NAYER hyper-parameters (40 generator steps)."""
    cfg.teacher.class_names = "cifar100"
    cfg.teacher.mean, cfg.teacher.std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    cfg.synthesis.num_generator_steps = 40
    cfg.run.run_dir = "runs/cifar100"
    return cfg


register_baselines("cifar100")


@preset("tiny_imagenet")
def tiny_imagenet() -> NayerConfig:
    """Tiny-ImageNet (64 px), resnet34 -> resnet18, published hyper-parameters (no flip)."""
    return NayerConfig(
        teacher=TeacherConfig(
            arch="resnet34",
            weights="",
            class_names="tiny_imagenet",
            mean=(0.4802, 0.4481, 0.3975),
            std=(0.2302, 0.2265, 0.2262),
            in_channels=3,
            image_size=64,
        ),
        student=StudentConfig(arch="resnet18"),
        synthesis=published_synthesis(
            batch_size=200, num_generator_steps=60, batches_per_epoch=4, warmup_batches_per_epoch=20, flip=False
        ),
        distill=published_distill(batch_size=256, steps_per_epoch=1000, lr=0.1, flip=False),
        eval=published_eval(),
        run=published_run("runs/tiny_imagenet"),
    )
