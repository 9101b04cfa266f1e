"""timm teachers: ``teacher.arch=timm:<name>`` and timm repositories of the hub (``teacher.arch=hf:<id>``).

* ``teacher.arch=timm:<name>`` (e.g. ``timm:resnet50.a1_in1k``) builds ``timm.create_model(name,
  pretrained=False, num_classes=K, in_chans=C)``; its weights are ``teacher.weights`` (a local
  .safetensors / .pth file, or ``hf-hub:timm/<repo>``), checked key by key as every factory teacher's.
  Its input settings left at their defaults come from the model's ``pretrained_cfg``
  (:func:`timm_source_input`; a value set in the config is kept, for a fine-tuned file): mean, std,
  input size (``input_size``), eval resize ``floor(size / crop_pct)`` (timm's own centre-crop rule);
  class names: the ImageNet names of ``nayer_scale.lte`` (key ``imagenet``) for a 1000-class model,
  else the ``label_descriptions`` / ``label_names`` of the config.
* A timm repository (a hub folder whose ``config.json`` has ``architecture`` and ``pretrained_cfg``,
  e.g. ``timm/resnet50.a1_in1k``, as timm's ``push_to_hub`` / ``save_for_hf`` write it) is read by
  :mod:`nayer_scale.models.hf` with :func:`timm_folder_config` and built by :func:`build_timm_folder_model`:
  with timm when it imports; where it does not, a ResNet-18/34/50 (:data:`ZOO_EQUIVALENTS`: timm's
  ``resnet18/34/50`` have exactly the keys and the forward pass of the zoo's torchvision-style
  ``tv_resnet18/34/50``) is built from the zoo, so those checkpoints load without timm.

timm is the ``vision`` extra (``pip install "nayer-scale[vision]"``); a missing one is one line
through :func:`nayer_scale.extras.require`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..config import NayerConfig
from ..extras import require
from ..lte.classnames import get_class_names
from .inputs import SourceInput, refuse_demo_weights, resolve_source_input
from .io import TeacherLoadError, load_state_dict_file
from .registry import build_model
from .teacher import Factory, ResolvedTeacher, load_checked

__all__ = [
    "TIMM_PREFIX",
    "ZOO_EQUIVALENTS",
    "build_timm_folder_model",
    "is_timm_arch",
    "is_timm_config",
    "load_timm_folder",
    "resolve_timm_teacher",
    "timm_factory",
    "timm_folder_config",
    "timm_source_input",
]

TIMM_PREFIX = "timm:"
#: timm architecture -> the zoo model with the same state_dict keys and forward pass (timm's ResNets
#: with the default stem, average pooling and no extra model arguments are torchvision's ResNets).
ZOO_EQUIVALENTS = {"resnet18": "tv_resnet18", "resnet34": "tv_resnet34", "resnet50": "tv_resnet50"}
_PLAIN_MODEL_ARGS = {"num_classes", "in_chans", "global_pool"}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_timm_arch(arch: object) -> bool:
    """Whether ``teacher.arch`` is ``timm:<name>``."""
    return isinstance(arch, str) and arch.startswith(TIMM_PREFIX)


def is_timm_config(config: dict) -> bool:
    """Whether a hub folder's parsed ``config.json`` is timm's (``architecture`` and ``pretrained_cfg``)."""
    return isinstance(config, dict) and "architecture" in config and isinstance(config.get("pretrained_cfg"), dict)


def _timm(purpose: str) -> ModuleType:
    return require("timm", "vision", purpose)


def _timm_if_importable() -> ModuleType | None:
    try:
        import importlib

        return importlib.import_module("timm")
    except Exception:  # not installed, or (PyPI's torchvision beside a CPU torch) failing to import
        return None


def _model_name(arch: str, timm: ModuleType) -> str:
    name = arch[len(TIMM_PREFIX) :]
    if not timm.is_model(name):
        raise TeacherLoadError(
            f"teacher.arch={arch}: timm has no model {name!r}; list them with "
            f"timm.list_models('{name.split('.')[0][:6]}*') (a tag after the dot names weights)"
        )
    return name


def timm_factory(arch: str) -> Factory:
    """The factory of ``timm:<name>``: ``f(num_classes, in_channels=3) -> timm.create_model(name,
    pretrained=False, num_classes=num_classes, in_chans=in_channels)`` (random weights; nothing is
    downloaded).

    Raises:
        MissingExtraError: timm is not installed. TeacherLoadError: timm has no such model.
    """
    timm = _timm(f"teacher.arch={arch}")
    name = _model_name(arch, timm)
    return lambda num_classes, in_channels=3: timm.create_model(
        name, pretrained=False, num_classes=num_classes, in_chans=in_channels
    )


def _square(size: Any, where: str) -> tuple[int, int]:
    """(channels, side) of a timm ``input_size`` (C, H, W)."""
    channels, height, width = (int(v) for v in size)
    if height != width:
        raise TeacherLoadError(
            f"{where}: input_size {list(size)} is not square; nayer-scale synthesises square "
            "images: use a model with a square input size"
        )
    return channels, height


def timm_source_input(pretrained_cfg: dict, num_classes: int, where: str, label_names: Any = None) -> SourceInput:
    """What a timm ``pretrained_cfg`` says about the input: mean / std, ``input_size`` (C, S, S) and the
    eval resize ``floor(S / crop_pct)`` of timm's centre crop (``crop_mode`` squash / border are
    evaluated with the centre crop too); class names: ImageNet's (``imagenet``) for 1000 classes, else
    ``label_names`` (a list of K names), else none.

    Raises:
        TeacherLoadError: a non-square input size.
    """
    channels, side = _square(pretrained_cfg.get("input_size", (3, 224, 224)), where)
    crop_pct = float(pretrained_cfg.get("crop_pct") or 0.875)
    mean, std = pretrained_cfg.get("mean"), pretrained_cfg.get("std")
    if mean is not None and len(mean) != channels:
        mean, std = None, None
    if num_classes == 1000:
        names, key = tuple(get_class_names("imagenet")), "imagenet"
    else:
        given = label_names if isinstance(label_names, (list, tuple)) and len(label_names) == num_classes else None
        names, key = (tuple(map(str, given)) if given else None), "id2label"
    return SourceInput(
        where=where,
        num_classes=num_classes,
        class_names=names,
        in_channels=channels,
        mean=tuple(map(float, mean)) if mean is not None else None,
        std=tuple(map(float, std)) if std is not None else None,
        image_size=side,
        eval_resize=int(math.floor(side / crop_pct)),
        names_key=key,
        names_must_match=False,
        no_names=f"{num_classes} classes and no label names in its pretrained_cfg",
    )


def timm_folder_config(config: dict, where: str) -> tuple[str, dict, SourceInput]:
    """(architecture, model arguments, input) of a timm repository's ``config.json``, read as timm's
    own hub loader reads it (top-level ``num_classes`` / ``label_names`` / ``label_descriptions``
    override ``pretrained_cfg``; ``model_args.in_chans`` sets the input channels).

    Raises:
        TeacherLoadError: a non-square input size.
    """
    pretrained_cfg = dict(config["pretrained_cfg"])
    model_args = dict(config.get("model_args") or {})
    num_classes = int(config.get("num_classes", pretrained_cfg.get("num_classes", 1000)))
    model_args.setdefault("num_classes", num_classes)
    if model_args.get("in_chans") is not None:
        pretrained_cfg["input_size"] = (model_args["in_chans"], *pretrained_cfg.get("input_size", (3, 224, 224))[1:])
    labels = (
        config.get("label_descriptions")
        or config.get("label_names")
        or pretrained_cfg.get("label_descriptions")
        or pretrained_cfg.get("label_names")
    )
    if isinstance(labels, dict):  # label_descriptions may map label name -> description
        labels = list(labels.values())
    return str(config["architecture"]), model_args, timm_source_input(pretrained_cfg, num_classes, where, labels)


def build_timm_folder_model(architecture: str, model_args: dict, where: str, *, meta: bool = False) -> nn.Module:
    """The model of a timm repository, random weights: ``timm.create_model(architecture,
    pretrained=False, **model_args)`` when timm imports, else the zoo's equivalent
    (:data:`ZOO_EQUIVALENTS`) when the architecture has one and ``model_args`` asks nothing else.

    Args:
        meta: build on the meta device (no memory; for the BatchNorm check before any download).

    Raises:
        MissingExtraError: timm is not installed and the zoo has no equivalent (the message names
            the ``vision`` extra). TeacherLoadError: timm fails to build it.
    """
    timm = _timm_if_importable()
    args = dict(model_args)
    zoo = ZOO_EQUIVALENTS.get(architecture)
    plain = set(args) <= _PLAIN_MODEL_ARGS and args.get("global_pool", "avg") == "avg"
    device = torch.device("meta") if meta else torch.device("cpu")
    if timm is None and zoo is not None and plain:
        with device:
            return build_model(zoo, int(args.get("num_classes", 1000)), int(args.get("in_chans", 3)))
    if timm is None:  # one line naming the extra (or the real import error of a broken install)
        timm = _timm(
            f"{where} (timm's {architecture}; without timm only {', '.join(ZOO_EQUIVALENTS)} with "
            "default arguments load)"
        )
    try:
        with device:
            return timm.create_model(architecture, pretrained=False, **args)
    except Exception as err:
        raise TeacherLoadError(
            f"{where}: timm.create_model({architecture!r}, **{args}) failed ({type(err).__name__}: {err})"
        ) from err


def load_timm_folder(folder: str | os.PathLike, architecture: str, model_args: dict, where: str) -> nn.Module:
    """The model of a timm repository folder with its weights (``model.safetensors``, else
    ``pytorch_model.bin``), on the CPU in float32, eval() mode.

    Raises:
        TeacherLoadError: no weights file in the folder; keys or shapes that do not fit (named);
            anything :func:`build_timm_folder_model` raises.
    """
    path = next((Path(folder) / f for f in _WEIGHT_FILES if (Path(folder) / f).is_file()), None)
    if path is None:
        raise TeacherLoadError(f"{where}: no {' or '.join(_WEIGHT_FILES)} in {folder}")
    model = build_timm_folder_model(architecture, model_args, where)
    load_checked(model, load_state_dict_file(path), path, architecture)
    return model.float().eval()


def resolve_timm_teacher(cfg: NayerConfig) -> ResolvedTeacher:
    """The ``teacher`` section (and ``eval.resize``) of a run with ``teacher.arch=timm:<name>``: fields
    left at their defaults filled from the model's ``pretrained_cfg`` by the rule of
    :mod:`nayer_scale.models.inputs`; values set in the config are kept (``teacher.weights`` may be a
    fine-tuned file of another input size or class count). ``cfg`` is not changed.

    Raises:
        MissingExtraError: timm is not installed. TeacherLoadError: timm has no such model.
        ConfigError: the default preset's demo weights left in ``teacher.weights``; class names left
            at the default for a model whose pretrained_cfg has none (not 1000 classes).
    """
    t = cfg.teacher
    timm = _timm(f"teacher.arch={t.arch}")
    name = _model_name(t.arch, timm)
    refuse_demo_weights(t, f"timm's weights of {name} (a local file, or hf-hub:timm/<repo>)")
    with torch.device("meta"):  # the resolved pretrained_cfg of the name (default tag included), no memory
        model = timm.create_model(name, pretrained=False)
    pretrained_cfg = dict(model.pretrained_cfg)
    num_classes = int(pretrained_cfg.get("num_classes") or model.num_classes)
    labels = pretrained_cfg.get("label_descriptions") or pretrained_cfg.get("label_names")
    src = timm_source_input(pretrained_cfg, num_classes, f"timm's pretrained_cfg of {name}", labels)
    # the pretrained_cfg is timm's weights' usual input; teacher.weights may be a fine-tuned file
    return resolve_source_input(cfg, dataclasses.replace(src, describes_weights=False))
