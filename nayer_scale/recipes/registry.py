"""The named recipes (presets) and how a run's config is composed from one.

A recipe is a function that returns a ``NayerConfig``; ``@preset(name)`` registers it, and
``@preset(name, parent=...)`` registers a function that changes a fresh copy of its parent's.
``compose_config`` builds a run's config in layers: recipe <- YAML file <- overrides.
"""

from __future__ import annotations

import functools
import typing
from pathlib import Path

from ..config import ConfigError, NayerConfig, layer, read_yaml

__all__ = ["PRESETS", "PresetBuilder", "compose_config", "get_preset", "preset", "preset_parents"]

PresetBuilder = typing.Callable[[], NayerConfig]
PRESETS: dict[str, PresetBuilder] = {}
_PARENTS: dict[str, str | None] = {}


def preset(name: str, parent: str | None = None) -> typing.Callable[[typing.Callable], PresetBuilder]:
    """Register a preset in ``PRESETS`` under ``name``.

    Without ``parent`` the decorated function takes no argument and returns a NayerConfig; with
    ``parent`` it is given a fresh copy of the parent preset's config and returns it changed. The
    decorator returns the zero-argument builder that it registered.

    Raises:
        ValueError: ``name`` is registered already, or ``parent`` is not (register parents first).
    """

    def register(fn: typing.Callable) -> PresetBuilder:
        if name in PRESETS:
            raise ValueError(f"preset {name!r} is registered twice")
        if parent is not None and parent not in PRESETS:
            raise ValueError(f"preset {name!r}: register its parent {parent!r} first")
        _PARENTS[name] = parent
        if parent is None:
            PRESETS[name] = fn
            return fn

        @functools.wraps(fn)
        def build() -> NayerConfig:
            return fn(PRESETS[parent]())

        PRESETS[name] = build
        return build

    return register


def preset_parents() -> dict[str, str | None]:
    """name -> the preset it derives from (None for a root recipe), in registration order."""
    return dict(_PARENTS)


def get_preset(name: str) -> NayerConfig:
    """A fresh NayerConfig for a named preset.

    Raises:
        ConfigError: an unknown name (the message lists the presets).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]()


def compose_config(
    default_preset: str,
    *,
    preset_name: str | None = None,
    config_file: str | Path | None = None,
    overrides: typing.Sequence[str] = (),
) -> NayerConfig:
    """The validated config: preset, then the YAML file's sections, then the overrides on top.

    The preset is ``preset_name`` when given (command line ``preset=``), else the YAML file's
    ``preset:`` key, else ``default_preset`` (the launch script's).

    Raises:
        ConfigError: an unknown preset, section or key, a bad value, or a failed validation.
        FileNotFoundError: ``config_file`` does not exist.
    """
    data = read_yaml(config_file) if config_file is not None else {}
    from_file = data.pop("preset", None)
    if from_file is not None and not isinstance(from_file, str):
        raise ConfigError(f"config file {config_file}: preset takes a preset name, got {from_file!r}")
    return layer(get_preset(preset_name or from_file or default_preset), data, overrides, source=config_file)
