"""The Python API: build a config, run a distillation, get its summary.

    from nayer_scale import NayerConfig, distill, get_preset

    cfg = get_preset("cifar10")
    cfg.teacher.weights = "wrn40_2.pth"
    summary = distill(cfg)               # or distill("cifar10", ["teacher.weights=wrn40_2.pth"])
    print(summary["student_top1"], summary["device_hours"])

``distill`` runs in this process (one process, or each process of ``accelerate launch``); the
trainer (``NayerTrainer``) and its phase methods are there for finer control.
"""

from __future__ import annotations

import typing

from .config import NayerConfig, apply_overrides
from .recipes import get_preset

if typing.TYPE_CHECKING:  # the trainer pulls in torch and accelerate: imported when used
    from .trainer import NayerTrainer

__all__ = ["distill", "trainer"]


def _config(config: NayerConfig | str, overrides: typing.Sequence[str]) -> NayerConfig:
    cfg = get_preset(config) if isinstance(config, str) else config
    return apply_overrides(cfg, list(overrides)).validate()


def trainer(config: NayerConfig | str = "fashion_mnist", overrides: typing.Sequence[str] = ()) -> NayerTrainer:
    """A ``NayerTrainer`` for ``config`` (a NayerConfig, or a preset name) with ``section.key=value``
    ``overrides`` applied; every input check has run when it returns.

    Raises:
        ConfigError, FileNotFoundError, nayer_scale.models TeacherLoadError, MissingExtraError,
        RunFolderInUse: what the command line reports as one line.
    """
    from .trainer import NayerTrainer

    return NayerTrainer(_config(config, overrides))


def distill(config: NayerConfig | str = "fashion_mnist", overrides: typing.Sequence[str] = ()) -> dict:
    """Run (or continue, with ``run.resume``) a whole distillation and return its summary:
    ``teacher_top1`` / ``student_top1`` (fractions in [0, 1], None without an evaluation set),
    ``student_agreement``, ``wall_s`` and per-phase seconds, ``device_hours`` and the precision; the
    student is ``<run.run_dir>/student.safetensors``. A preempted run (SIGTERM / SIGUSR1) returns
    ``{"preempted": True, "checkpoint": ..., "epoch": ...}``.

    Raises:
        as ``trainer``; ``storage.DiskFullError`` when the disk fills during the run (the same call
        resumes once space is freed).
    """
    return trainer(config, overrides).fit()
