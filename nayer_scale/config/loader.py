"""Setting config fields by dotted path: command-line overrides, nested dicts (a checkpoint's
``to_dict()``), YAML files; and the keys of earlier config versions.

A config is built in layers, each on top of the one before (``nayer_scale.recipes.compose_config``):

    dataclass defaults <- recipe (``preset=<name>``) <- YAML file (``config=run.yaml``)
                       <- ``section.key=value`` overrides (``synthesis.nayer.generator_input=noise``)

Keys that moved keep working for one release, with a DeprecationWarning naming the new key
(``RENAMED_FIELDS``): the flat synthesis keys of config v1 (``synthesis.generator_input``,
``synthesis.tv_loss_weight``, ...), the memory-cache keys that were under ``run``, and the
quantization keys of the student, whose ``student.quantization=w4a4`` string became bit widths.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml

from .schema import NayerConfig, QuantizationConfig
from .validate import ConfigError, hints, type_name, type_ok

__all__ = [
    "CONVERTED_FIELDS",
    "RENAMED_FIELDS",
    "REPLACED_FIELDS",
    "apply_overrides",
    "config_from_dict",
    "flatten",
    "layer",
    "read_yaml",
]

#: old key -> its place now; accepted with a DeprecationWarning.
RENAMED_FIELDS: dict[str, str] = {
    **{
        f"synthesis.{name}": f"synthesis.{sub}.{name}"
        for sub, names in (
            (
                "nayer",
                (
                    "generator_input",
                    "noise_beta",
                    "noisy_layer",
                    "noisy_layer_reinit",
                    "noisy_layer_init",
                    "noisy_layer_batchnorm",
                    "shared_generator",
                ),
            ),
            ("deepinversion", ("tv_loss_weight", "l2_loss_weight")),
            ("fast", ("latent_lr", "meta_learning")),
        )
        for name in names
    },
    "run.memory_cache": "memory.cache",
    "run.memory_cache_gb": "memory.cache_gb",
    "student.quantization_keep_ends_8bit": "student.quantization.keep_ends_8bit",
    "student.quantization_fold_bn": "student.quantization.fold_bn",
}


def _bits_of(text: Any) -> dict[str, int]:
    """``"w4a8"`` -> weight_bits 4, activation_bits 8; ``"none"`` -> 0, 0 (ConfigError otherwise)."""
    q = QuantizationConfig.from_name(str(text))
    return {"weight_bits": q.weight_bits, "activation_bits": q.activation_bits}


#: old key whose value became several keys -> (the function giving them, what the message names).
CONVERTED_FIELDS: dict[str, tuple[Callable[[Any], dict[str, Any]], str]] = {
    "student.quantization": (_bits_of, "student.quantization.weight_bits and .activation_bits"),
}


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")


#: old key that was replaced by another key of another type -> (the new key, its value from the old).
REPLACED_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "run.tensorboard": ("run.log_with", lambda v: "tensorboard" if _truthy(v) else "none"),
}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed: use {new}", DeprecationWarning, stacklevel=5)


def _locate(config: NayerConfig, path: str) -> tuple[Any, str]:
    """The object holding the field at dotted ``path`` and the field's name.

    Raises:
        ConfigError: an unknown section or key (the message lists the valid ones).
    """
    parts, owner = path.split("."), config
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(owner)]
        if part not in names:
            if depth == 0:
                raise ConfigError(f"unknown config section {part!r} in {path!r}; sections: {', '.join(names)}")
            raise ConfigError(f"unknown key {path!r}; {'.'.join(parts[:depth])} has: {', '.join(sorted(names))}")
        if depth == len(parts) - 1:
            return owner, part
        owner = getattr(owner, part)
        if not dataclasses.is_dataclass(owner):
            raise ConfigError(f"{'.'.join(parts[: depth + 1])} is a value, not a section: unknown key {path!r}")
    raise AssertionError("unreachable")


def _convert(value: str, annotation: Any, key: str) -> Any:
    """Parse a command-line string into the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin is Literal:  # the choice is checked by validate()
        return value
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        return tuple(_convert(v.strip(), item_type, key) for v in value.split(",") if v.strip())
    if annotation is bool:
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} takes true/false, got {value!r}")
    try:
        return annotation(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key} takes a {annotation.__name__}, got {value!r}") from err


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """A value read from JSON / YAML / a dict into the field's declared type (lists -> tuples,
    ints -> floats, strings parsed as on the command line, e.g. YAML 1.1 reads 4e-3 as a string)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return str(value).lower() if isinstance(value, bool) else value  # YAML reads true / false unquoted
    if isinstance(value, str) and annotation is not str:
        return _convert(value, annotation, key)
    if origin is tuple and isinstance(value, (list, tuple)):
        item_type = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item_type, key) for v in value)
    if annotation is float and type_ok(value, float):
        return float(value)
    if origin is not tuple and type_ok(value, annotation):
        return value
    raise ConfigError(f"{key} takes a {type_name(annotation)}, got {value!r}")


def _assign(config: NayerConfig, path: str, value: Any, *, text: bool) -> None:
    """Set the field at dotted ``path``; ``text``: parse a command-line string, else coerce."""
    if path in REPLACED_FIELDS:
        new, convert = REPLACED_FIELDS[path]
        _warn(f"{path}={value}", new)
        path, value, text = new, convert(value), False
    new = RENAMED_FIELDS.get(path)
    if new is not None:
        _warn(path, new)
        path = new
    owner, name = _locate(config, path)
    current = getattr(owner, name)
    if dataclasses.is_dataclass(current):
        if not text and value in (None, {}):  # an empty section in a file
            return
        if path in CONVERTED_FIELDS and not isinstance(value, dict):
            convert, names = CONVERTED_FIELDS[path]
            converted = convert(value)  # a bad value is refused before it is warned about
            _warn(f"{path}={value}", names)
            for key, item in converted.items():
                setattr(current, key, item)
            return
        keys = ", ".join(f"{path}.{f.name}" for f in dataclasses.fields(current))
        raise ConfigError(f"{path} is a section, not a value; set its keys: {keys}")
    annotation = hints(type(owner))[name]
    setattr(owner, name, _convert(value, annotation, path) if text else _coerce(value, annotation, path))


def flatten(data: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf of a nested mapping."""
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            yield from flatten(value, path)
        else:
            yield path, value


def apply_overrides(config: NayerConfig, overrides: list[str]) -> NayerConfig:
    """Apply ``section.key=value`` / ``section.sub.key=value`` strings (e.g. ``synthesis.bn_loss_weight=5``,
    ``synthesis.nayer.generator_input=noise``) in order, in place; returns ``config`` (not validated).
    Keys of earlier versions (``RENAMED_FIELDS``, ``CONVERTED_FIELDS``) go to their new place with
    a DeprecationWarning.

    Raises:
        ConfigError: for a malformed item, an unknown section or key, or a value of the wrong type.
    """
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        path, value = item.split("=", 1)
        _assign(config, path, value, text=True)
    return config


_V1_SYNTHESIS_KEYS = frozenset(old.split(".", 1)[1] for old in RENAMED_FIELDS if old.startswith("synthesis."))


def _from_v1_deepinversion(data: dict) -> dict:
    """``data`` with the pixel optimiser of a DeepInversion run moved to its v2 place when the
    synthesis section is a whole v1 one (a v1 ``to_dict()``, e.g. in a checkpoint): config v1 kept
    it in ``synthesis.generator_lr`` / ``generator_betas``."""
    s = data.get("synthesis")
    if not isinstance(s, dict) or s.get("method") != "deepinversion" or not _V1_SYNTHESIS_KEYS <= s.keys():
        return data
    s, pixel = dict(s), {}
    for old, new in (("generator_lr", "pixel_lr"), ("generator_betas", "pixel_betas")):
        if old in s:
            pixel[new] = s.pop(old)
            warnings.warn(
                f"synthesis.{old} of a v1 DeepInversion config is deprecated and will be removed: use "
                f"synthesis.deepinversion.{new}",
                DeprecationWarning,
                stacklevel=3,
            )
    return {**data, "synthesis": {**s, "deepinversion": {**s.get("deepinversion", {}), **pixel}}}


def config_from_dict(data: dict, base: NayerConfig | None = None) -> NayerConfig:
    """A NayerConfig from a nested mapping: ``to_dict()`` output (e.g. the copy stored in a
    checkpoint) or a YAML file's sections. Missing keys keep their value in ``base`` (default: the
    dataclass defaults), which is changed in place. Keys of earlier versions are mapped to their
    new place with a DeprecationWarning (``RENAMED_FIELDS``, ``CONVERTED_FIELDS``; the pixel lr /
    betas of a whole v1 DeepInversion section too). Not validated.

    Raises:
        ConfigError: an unknown section or key (the message lists the valid ones), a wrong type.
    """
    config = NayerConfig() if base is None else base
    if not isinstance(data, dict):
        raise ConfigError(f"a config is a mapping of sections, got {type(data).__name__}")
    for path, value in flatten(_from_v1_deepinversion(data)):
        _assign(config, path, value, text=False)
    return config


def read_yaml(path: str | Path) -> dict:
    """The mapping of a YAML config file: ``section: {key: value}`` (sub-sections nested), and
    optionally ``preset: <name>``.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not YAML, or not a mapping.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist: give config=<path of a YAML file>")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections (run:, synthesis:, ...), got a {type(data).__name__}"
        )
    return data


def layer(
    base: NayerConfig, data: dict, overrides: typing.Sequence[str], source: str | Path | None = None
) -> NayerConfig:
    """``base`` (a recipe's config) with a YAML file's sections ``data`` and then ``overrides`` on
    top, validated.

    Raises:
        ConfigError: an unknown section or key, a bad value, or a failed validation (a file's
            error names ``source``).
    """
    try:
        config_from_dict(data, base=base)
    except ConfigError as err:
        raise ConfigError(f"config file {source}: {err}") from None
    return apply_overrides(base, list(overrides)).validate()
