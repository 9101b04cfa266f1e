"""The hyper-parameters that the published NAYER scripts share (CIFAR-10 values; see docs/method.md),
as the sections the dataset recipes start from."""

from __future__ import annotations

from ..config import DistillConfig, EvalConfig, RunConfig, SynthesisConfig

__all__ = ["published_distill", "published_eval", "published_run", "published_synthesis"]


def published_synthesis(**changes) -> SynthesisConfig:
    """CIFAR-10: synthesis batches of 400, 30 generator steps, 2 batches per epoch (10 in warm-up),
    generator width 64, crop padding 4; the loss weights and momentum are the schema's defaults."""
    values = dict(
        batch_size=400,
        num_generator_steps=30,
        batches_per_epoch=2,
        warmup_batches_per_epoch=10,
        generator_width=64,
        crop_padding=4,
    )
    return SynthesisConfig(**{**values, **changes})


def published_distill(**changes) -> DistillConfig:
    """CIFAR-10: student batches of 512, 400 steps per epoch, SGD lr 0.2, crop padding 4."""
    return DistillConfig(**{**dict(batch_size=512, steps_per_epoch=400, lr=0.2, crop_padding=4), **changes})


def published_eval(**changes) -> EvalConfig:
    """No real evaluation set (data-free), every epoch when one is given."""
    return EvalConfig(**{**dict(dataset="none", every_epochs=1), **changes})


def published_run(run_dir: str, **changes) -> RunConfig:
    """E = 100 epochs after 20 of warm-up (120 in all), a new run (no resume) in ``run_dir``."""
    return RunConfig(**{**dict(run_dir=run_dir, epochs=120, warmup_epochs=20, resume=False), **changes})
