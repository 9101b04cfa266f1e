"""Bring your own teacher: build a zoo model or ``package.module:factory``, load a weights file
(safetensors or .pth), and reject bad input with a clear error before any work starts.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .models import build_model, get_classifier, list_models

__all__ = ["TeacherLoadError", "build_teacher", "load_state_dict_file", "read_metadata", "resolve_architecture",
           "save_model"]

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.")


class TeacherLoadError(ValueError):
    """The teacher (or a model file) cannot be used as given; the message says what to change."""


def resolve_architecture(arch: str) -> Callable[..., nn.Module]:
    """A factory ``f(num_classes, in_channels)`` for a zoo name or ``package.module:factory``.

    Raises:
        TeacherLoadError: unknown zoo name, or an import path that does not import.
    """
    if ":" in arch:
        module_name, attr = arch.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise TeacherLoadError(f"cannot import teacher factory {arch!r}: {err}") from err
        if "in_channels" in inspect.signature(factory).parameters:
            return factory
        return lambda num_classes, in_channels=3: factory(num_classes=num_classes)
    if arch not in list_models():
        raise TeacherLoadError(f"unknown architecture {arch!r}: use a zoo name ({', '.join(list_models())}) "
                               "or an import path package.module:factory")
    return lambda num_classes, in_channels=3: build_model(arch, num_classes, in_channels)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file (.pth/.pt/.bin, loaded with weights_only).

    ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers are unwrapped and ``module.`` (DDP) and
    ``_orig_mod.`` (torch.compile) key prefixes stripped.

    Raises:
        TeacherLoadError: the file does not exist or holds no tensor dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherLoadError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in _WRAPPER_KEYS:
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherLoadError(f"{path} does not hold a state dict of tensors")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _preview(keys: list[str]) -> str:
    return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")


def build_teacher(arch: str, weights: str | os.PathLike | None, num_classes: int, in_channels: int = 3, *,
                  require_weights: bool = True) -> nn.Module:
    """Build the teacher and load its weights, checking everything first.

    Checks in order: the weights file exists; the model builds; its classifier has ``num_classes``
    outputs; the file's keys and shapes match the model exactly; the model has a BatchNorm layer
    (NAYER's BN-statistics loss needs the teacher's running statistics).

    Returns:
        the model in eval mode with requires_grad False on every parameter.

    Raises:
        TeacherLoadError: for each failed check, with what to change.
    """
    if weights is None and require_weights:
        raise TeacherLoadError("teacher.weights is empty: give the teacher's weights file")
    if weights is not None and not Path(weights).expanduser().is_file():
        raise TeacherLoadError(f"teacher weights file {weights} does not exist")
    model = resolve_architecture(arch)(num_classes=num_classes, in_channels=in_channels)
    width = get_classifier(model).out_features
    if width != num_classes:
        raise TeacherLoadError(f"the classifier of {arch} has {width} outputs but {num_classes} class names were "
                               "given: pass the teacher's own class list")
    if weights is not None:
        state = load_state_dict_file(weights)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise TeacherLoadError(f"{weights} does not fit {arch}: missing keys [{_preview(missing)}], "
                                   f"unexpected keys [{_preview(unexpected)}]")
        wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
                 if state[k].shape != v.shape]
        if wrong:
            raise TeacherLoadError(f"{weights} has tensors of the wrong shape for {arch}: {_preview(wrong)} "
                                   "(another class count or input channel count?)")
        model.load_state_dict(state)
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise TeacherLoadError(f"{arch} has no BatchNorm layer: NAYER matches the teacher's BatchNorm "
                               "statistics and cannot distill a teacher without them")
    return model.eval().requires_grad_(False)


def save_model(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save ``model.state_dict()`` as safetensors with string ``metadata``."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata or {})


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file ({} for other formats)."""
    if not str(path).endswith(".safetensors"):
        return {}
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
