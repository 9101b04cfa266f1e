"""The baselines of the paper's Table 2 on a NAYER recipe: DeepInversion and Fast, on the same
teacher, student, student schedule and evaluation (``<recipe>_deepinversion`` / ``<recipe>_fast``)."""

from __future__ import annotations

from ..config import NayerConfig
from .registry import preset

__all__ = ["as_deepinversion", "as_fast", "described", "register_baselines"]


def as_deepinversion(cfg: NayerConfig, steps: int = 2000) -> NayerConfig:
    """Turn a NAYER preset into DeepInversion (Yin et al., CVPR 2020) on the same teacher, student
    and student schedule: ``steps`` Adam updates (lr 0.1, betas 0.5/0.99; DataFree toolbox CIFAR
    scripts) of the pixels of each batch, loss weights bn 10, ce 1, adv 1, image priors tv_l2 1e-4
    and l2 1e-5 and first-BN multiplier 10 (NVlabs), no BN-statistics momentum, no warm-up, one
    synthesis batch per epoch. ``steps`` is 2000 in the published CIFAR runs.

    The pixel optimiser is ``synthesis.deepinversion.pixel_lr`` / ``pixel_betas`` (config v1 used
    ``synthesis.generator_lr`` / ``generator_betas`` for it; those now only drive generators)."""
    s, di = cfg.synthesis, cfg.synthesis.deepinversion
    s.method, s.num_generator_steps, s.batches_per_epoch, s.warmup_batches_per_epoch = "deepinversion", steps, 1, 0
    di.pixel_lr, di.pixel_betas = 0.1, (0.5, 0.99)
    s.bn_loss_weight, s.ce_loss_weight, s.adv_loss_weight = 10.0, 1.0, 1.0
    di.tv_loss_weight, di.l2_loss_weight, s.first_bn_multiplier, s.bn_momentum = 1e-4, 1e-5, 10.0, 0.0
    cfg.run.warmup_epochs = 0
    cfg.run.run_dir += "_deepinversion"
    return cfg


def as_fast(cfg: NayerConfig) -> NayerConfig:
    """Turn a NAYER preset into Fast / FM (Fang et al., AAAI 2022) on the same teacher, student and
    schedule: a generator fed with 256-d random noise, meta-learned across batches (FOMAML, the
    published default), 5 steps per batch with lr_g 3e-3 and lr_z 0.01, loss weights adv 1.1, bn 10,
    ce 0.4, BN-statistics momentum 0.9 (toolbox flags of the 5-step CIFAR-100 runs)."""
    s = cfg.synthesis
    s.method, s.noise_dim, s.num_generator_steps = "fast", 256, 5
    s.generator_lr, s.fast.latent_lr, s.fast.meta_learning = 3e-3, 0.01, "fomaml"
    s.adv_loss_weight, s.bn_loss_weight, s.ce_loss_weight, s.bn_momentum = 1.1, 10.0, 0.4, 0.9
    cfg.run.run_dir += "_fast"
    return cfg


def described(fn, doc: str):
    """``fn`` under another docstring (``nayer-scale presets`` shows each preset's first sentence)."""

    def recipe(cfg: NayerConfig) -> NayerConfig:
        return fn(cfg)

    recipe.__doc__, recipe.__name__ = doc, fn.__name__
    return recipe


def register_baselines(parent: str) -> None:
    """Register ``<parent>_deepinversion`` and ``<parent>_fast`` with the published recipes."""
    preset(f"{parent}_deepinversion", parent=parent)(
        described(
            as_deepinversion,
            f"DeepInversion (Yin et al., CVPR 2020) on the {parent} teacher, student and schedule: "
            "2000 pixel steps per batch. See ``as_deepinversion``.",
        )
    )
    preset(f"{parent}_fast", parent=parent)(
        described(
            as_fast,
            f"Fast (Fang et al., AAAI 2022) on the {parent} teacher, student and schedule: a meta-learned "
            "generator, 5 steps per batch. See ``as_fast``.",
        )
    )
