"""Bring your own teacher: build a zoo model or ``package.module:factory``, load a weights file
(safetensors or .pth), and reject bad input with a clear error before any work starts.

NAYER (Tran et al., "NAYER: Noisy Layer Data Generation for Efficient and Effective Data-free
Knowledge Distillation", CVPR 2024) synthesises images by matching the teacher's BatchNorm running
statistics, so a teacher must have BatchNorm layers; :func:`build_teacher` checks that too.
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

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "teacher")
_PREFIXES = ("module.", "_orig_mod.")
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)  # absent from checkpoints of old PyTorch; unused in eval


class TeacherLoadError(ValueError):
    """The teacher (or a model file) cannot be used as given; the message says what to change."""


def resolve_architecture(arch: str) -> Callable[..., nn.Module]:
    """A factory ``f(num_classes, in_channels=3) -> nn.Module`` for a zoo name or an import path.

    Args:
        arch: a name of :func:`nayer_scale.models.list_models` (e.g. ``"resnet20"``), or
            ``"package.module:factory"``. The factory is called as
            ``factory(num_classes=K, in_channels=C)``, or ``factory(num_classes=K)`` when it takes no
            ``in_channels`` (nor ``**kwargs``) argument.

    Raises:
        TeacherLoadError: unknown zoo name, an import path that does not import, or a non-callable.
    """
    if ":" not in arch:
        if arch not in list_models():
            raise TeacherLoadError(f"unknown architecture {arch!r}: use a zoo name ({', '.join(list_models())}) "
                                   "or an import path package.module:factory")
        return lambda num_classes, in_channels=3: build_model(arch, num_classes, in_channels)
    module_name, _, attr = arch.partition(":")
    try:
        factory = importlib.import_module(module_name)
        for part in attr.split("."):
            factory = getattr(factory, part)
    except Exception as err:  # ImportError, AttributeError, or an error raised while importing the module
        raise TeacherLoadError(f"cannot import teacher factory {arch!r} ({type(err).__name__}: {err}): check the "
                               "module is importable (on PYTHONPATH) and defines that name") from err
    if not callable(factory):
        raise TeacherLoadError(f"teacher factory {arch!r} is a {type(factory).__name__}, not a callable")
    try:
        params = inspect.signature(factory).parameters.values()
        takes_channels = any(p.name == "in_channels" or p.kind is p.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):  # no introspectable signature: pass the documented arguments
        takes_channels = True
    if takes_channels:
        return lambda num_classes, in_channels=3: factory(num_classes=num_classes, in_channels=in_channels)
    return lambda num_classes, in_channels=3: factory(num_classes=num_classes)


def _unwrap(state: object) -> object:
    """Descend through ``{"state_dict": ...}``-style checkpoint wrappers."""
    while isinstance(state, dict):
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None or (state and all(isinstance(v, torch.Tensor) for v in state.values())):
            break
        state = inner
    return state


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (CPU tensors, dtypes as stored) from a weights file.

    ``.safetensors`` files are read with safetensors; anything else (.pth/.pt/.bin) with
    ``torch.load(weights_only=True, map_location="cpu")``. ``{"state_dict": ...}``, ``{"model": ...}``
    (also ``model_state_dict``, ``net``, ``teacher``) wrappers are unwrapped, and a ``module.`` (DDP /
    DataParallel) or ``_orig_mod.`` (torch.compile) prefix shared by all keys is stripped.

    Raises:
        TeacherLoadError: the file does not exist (checked first), cannot be read, or holds no dict of
            tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherLoadError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise TeacherLoadError(f"cannot read weights file {path} ({type(err).__name__}: {err}); save the model's "
                               "state_dict() with torch.save or safetensors, not the pickled model object") from err
    state = _unwrap(state)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = f"a dict with keys {list(state)[:10]}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise TeacherLoadError(f"{path} does not hold a state dict of tensors (found {found}); save "
                               "model.state_dict(), optionally as {'state_dict': ...}")
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _preview(items: list[str]) -> str:
    return ", ".join(items[:10]) + (f", ... ({len(items)} in all)" if len(items) > 10 else "")


def build_teacher(arch: str, weights: str | os.PathLike | None, num_classes: int, in_channels: int = 3, *,
                  require_weights: bool = True) -> nn.Module:
    """Build the teacher and load its weights, checking everything before any work starts.

    Checks, in this order: the weights file exists (when ``require_weights`` or ``weights`` is given);
    the model builds; its classifier (:func:`nayer_scale.models.get_classifier`) has ``num_classes``
    outputs; the file's keys match the model's (``*.num_batches_tracked`` may be absent) and every
    tensor has the model's shape; the model has a BatchNorm layer (NAYER's BN-statistics loss needs
    the teacher's running statistics).

    Args:
        arch: zoo name or ``package.module:factory`` (see :func:`resolve_architecture`).
        weights: .safetensors / .pth file, or None for random weights (only if not ``require_weights``).
        num_classes: number of class names; must equal the classifier width.
        in_channels: input channels (1 for Fashion-MNIST, 3 for CIFAR).
        require_weights: refuse ``weights=None``.

    Returns:
        the model on the CPU, float32 parameters as built, in eval() mode, with ``requires_grad``
        False on every parameter; it maps (N, in_channels, H, W) float input to (N, num_classes) logits.

    Raises:
        TeacherLoadError: for each failed check, saying what to change.
    """
    if weights is None and require_weights:
        raise TeacherLoadError("teacher.weights is empty: give the teacher's weights file (.safetensors or .pth)")
    if weights is not None and not Path(weights).expanduser().is_file():
        raise TeacherLoadError(f"teacher weights file {weights} does not exist")
    factory = resolve_architecture(arch)
    try:
        model = factory(num_classes=num_classes, in_channels=in_channels)
    except Exception as err:
        raise TeacherLoadError(f"building teacher {arch!r} with num_classes={num_classes}, in_channels={in_channels} "
                               f"failed: {type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise TeacherLoadError(f"teacher factory {arch!r} returned a {type(model).__name__}, not an nn.Module")
    try:
        width = get_classifier(model).out_features
    except ValueError as err:
        raise TeacherLoadError(f"{arch} has no nn.Linear classifier: the teacher must end in one") from err
    if width != num_classes:
        raise TeacherLoadError(f"the classifier of {arch} has {width} outputs but {num_classes} class names were "
                               "given: pass the teacher's own class list")
    if weights is not None:
        state = load_state_dict_file(weights)
        own = model.state_dict()
        missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise TeacherLoadError(f"{weights} does not fit {arch}: missing keys [{_preview(missing)}]; unexpected "
                                   f"keys [{_preview(unexpected)}] (another architecture or depth?)")
        wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
                 if k in state and state[k].shape != v.shape]
        if wrong:
            raise TeacherLoadError(f"{weights} has tensors of the wrong shape for {arch}: {_preview(wrong)} "
                                   "(another class count, input channel count or width?)")
        model.load_state_dict({**own, **state})
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise TeacherLoadError(f"{arch} has no BatchNorm layer: NAYER matches the teacher's BatchNorm running "
                               "statistics and cannot distill a teacher without them")
    return model.eval().requires_grad_(False)


def save_model(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save ``model.state_dict()`` (each tensor detached, copied to the CPU, contiguous) as safetensors.

    Args:
        model: any module; tied (shared) tensors are stored as separate copies.
        path: destination, conventionally ``*.safetensors``.
        metadata: string-to-string header entries (e.g. a JSON-encoded config), read back by
            :func:`read_metadata`.

    Raises:
        TypeError: a metadata key or value is not a string.
    """
    metadata = dict(metadata or {})
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; json.dumps the values of {bad}")
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, {} for other formats (.pth has none).

    Raises:
        TeacherLoadError: the file does not exist.
    """
    if not Path(path).expanduser().is_file():
        raise TeacherLoadError(f"model file {path} does not exist")
    if not str(path).endswith(".safetensors"):
        return {}
    with safe_open(str(Path(path).expanduser()), framework="pt") as f:
        return dict(f.metadata() or {})
