"""What ``accelerate launch`` asked for: its mixed precision and dynamo backend, merged into the run.

``accelerate launch`` hands its settings (command-line flags, else the config file of
``accelerate config``, else its defaults) to the processes it starts through environment variables:
``ACCELERATE_MIXED_PRECISION`` and ``ACCELERATE_DYNAMO_BACKEND`` (``ACCELERATE_DYNAMO_MODE``). The
trainer builds its Accelerator with ``mixed_precision="no"`` (autocast and loss scaling are its own:
``nayer_scale.precision``) and compiles the student itself, so these variables would otherwise be
ignored. The rules:

- mixed precision: the launcher's ``fp16`` / ``bf16`` decides when ``run.mixed_precision=auto``; an
  explicit run value that differs is refused, naming both. The launcher writes ``no`` when nothing was
  asked for, so its ``no`` cannot be told from "not set": it leaves ``auto`` to the capability rule
  (use ``run.mixed_precision=no`` to force fp32). ``fp8`` is refused.
- dynamo: a launcher backend other than ``no`` turns ``run.compile`` on with that backend
  (``run.compile_backend``); an explicit, different ``run.compile_backend`` is refused.

Both are applied to the run's config before anything is built, so ``config.json`` records what ran.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import ConfigError

__all__ = ["LauncherSettings", "apply_launcher_settings", "launcher_settings"]

_DEFAULT_BACKEND = "inductor"


@dataclass(frozen=True)
class LauncherSettings:
    """The settings ``accelerate launch`` passed down (``None``: not set, or its default ``no``).

    Attributes:
        mixed_precision: "fp16", "bf16" or "fp8".
        dynamo_backend: a torch.compile backend name in lower case, e.g. "inductor".
        dynamo_mode: torch.compile mode, e.g. "max-autotune" (``None``: torch's default).
    """

    mixed_precision: str | None = None
    dynamo_backend: str | None = None
    dynamo_mode: str | None = None


def launcher_settings(environ: Mapping[str, str] | None = None) -> LauncherSettings:
    """Read the launcher's settings from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ

    def value(name: str) -> str | None:
        v = env.get(name, "").strip().lower()
        return None if v in ("", "no", "none") else v

    return LauncherSettings(
        value("ACCELERATE_MIXED_PRECISION"),
        value("ACCELERATE_DYNAMO_BACKEND"),
        value("ACCELERATE_DYNAMO_MODE") if value("ACCELERATE_DYNAMO_BACKEND") else None,
    )


def apply_launcher_settings(run, launcher: LauncherSettings | None = None) -> list[str]:
    """Merge ``launcher`` (default: read from the environment) into ``run`` (a RunConfig), in place.

    Returns:
        One line per setting taken from the launcher, for the start-up message (empty: none).
    Raises:
        ConfigError: the launcher and the run ask for different precisions or backends, or fp8.
    """
    launcher = launcher_settings() if launcher is None else launcher
    taken = []
    mp = launcher.mixed_precision
    if mp is not None:
        if mp not in ("fp16", "bf16"):
            raise ConfigError(
                f"accelerate launch --mixed_precision {mp} (ACCELERATE_MIXED_PRECISION) is not supported: "
                "use fp16, bf16 or no, or set run.mixed_precision"
            )
        if run.mixed_precision == "auto":
            run.mixed_precision = mp
            taken.append(f"precision {mp} from accelerate launch --mixed_precision")
        elif run.mixed_precision != mp:
            raise ConfigError(
                f"run.mixed_precision={run.mixed_precision} but accelerate launch --mixed_precision {mp} "
                "(ACCELERATE_MIXED_PRECISION, from the flag or the accelerate config file): make them "
                "equal, or drop one (run.mixed_precision=auto follows the launcher)"
            )
    backend = launcher.dynamo_backend
    if backend is not None:
        if run.compile and run.compile_backend not in (backend, _DEFAULT_BACKEND):
            raise ConfigError(
                f"run.compile_backend={run.compile_backend} but accelerate launch --dynamo_backend "
                f"{backend} (ACCELERATE_DYNAMO_BACKEND): make them equal, or drop one"
            )
        run.compile, run.compile_backend = True, backend
        taken.append(f"torch.compile backend {backend} from accelerate launch --dynamo_backend")
    if launcher.dynamo_mode is not None:
        run.compile_mode = launcher.dynamo_mode
    return taken
