"""torchvision teachers: ``teacher.arch=torchvision:<name>``, any classification model of
``torchvision.models.list_models(module=torchvision.models)`` (resnet101, efficientnet_b0,
mobilenet_v3_large, regnet_y_16gf, densenet121, ...).

``teacher.weights`` is one of:

* torchvision's weights by their enum name, as ``torchvision.models.get_weight`` takes it
  (``ResNet101_Weights.IMAGENET1K_V2``, ``ResNet101_Weights.DEFAULT``; ``torchvision:resnet101.IMAGENET1K_V2``
  also works): the model is built by torchvision's own builder, ``get_model(name, weights=...)``,
  which downloads the file once (hash-checked, into ``torch.hub.get_dir()/checkpoints``) and applies
  the weights' own settings; normalisation, input size, eval resize and class names come from the
  weights' ``transforms()`` and ``meta["categories"]`` (:func:`resolve_torchvision_teacher`);
* a local .pth / .safetensors file: ``get_model(name, weights=None, num_classes=K)`` loaded with the
  checks of every factory teacher (keys, shapes); a file named as torchvision names its downloads
  (``resnet101-cd907fc2.pth``, the last part of the weights' URL) gets that weights' input settings,
  any other file the config's own (``teacher.mean``, ``teacher.std``, ``teacher.image_size``,
  ``teacher.class_names``: e.g. ``preset=imagenet_r50``);
* empty: random weights, the config's own settings.

torchvision models take 3-channel input. torchvision is the ``vision`` extra (``pip install
"nayer-scale[vision]"``); a missing one is one line through :func:`nayer_scale.extras.require`.
NAYER (Tran et al., CVPR 2024) matches the teacher's BatchNorm running statistics, so a model without
BatchNorm (ViT, Swin, ConvNeXt, MaxViT) is refused before its weights are downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, NayerConfig
from ..lte.classnames import resolve_class_names
from .hub import (
    TORCHVISION_PREFIX,
    check_torchvision_fit,
    is_torchvision_spec,
    offline_advice,
    refuse_offline,
    torchvision_models,
    torchvision_weights_enum,
)
from .inputs import OWN_NAMES, SourceInput, refuse_demo_weights, resolve_source_input
from .io import TeacherLoadError, load_state_dict_file
from .teacher import ResolvedTeacher, check_batchnorm, check_classifier, instantiate, load_checked

__all__ = ["build_torchvision_teacher", "is_torchvision_arch", "resolve_torchvision_teacher", "torchvision_input"]


def is_torchvision_arch(arch: object) -> bool:
    """Whether ``teacher.arch`` is ``torchvision:<name>``."""
    return isinstance(arch, str) and arch.startswith(TORCHVISION_PREFIX)


def _model_name(arch: str, models: ModuleType) -> str:
    name = arch[len(TORCHVISION_PREFIX) :]
    if name not in models.list_models(module=models):
        raise TeacherLoadError(
            f"teacher.arch={arch}: torchvision has no classification model {name!r} "
            "(torchvision.models.list_models(module=torchvision.models) lists them, e.g. resnet101, "
            "efficientnet_b0, mobilenet_v3_large)"
        )
    return name


def _weights_of(weights: str | os.PathLike | None, name: str, models: ModuleType) -> Any:
    """The weights enum member that ``teacher.weights`` names (an enum name, a ``torchvision:`` spec,
    or a local file named as torchvision names that weights' download), else None.

    Raises:
        TeacherLoadError: unknown weights, or weights of another model.
    """
    if not weights:
        return None
    if is_torchvision_spec(weights):
        owner, enum = torchvision_weights_enum(str(weights))
        if owner != name:
            raise TeacherLoadError(
                f"teacher.weights={weights} are weights of torchvision's {owner}: set "
                f"teacher.arch={TORCHVISION_PREFIX}{owner}, not {TORCHVISION_PREFIX}{name}"
            )
        return enum
    file_name = Path(weights).name
    enum_class = models.get_model_weights(name)
    return next((w for w in enum_class if w.url.rsplit("/", 1)[-1] == file_name), None)


def torchvision_input(weights: Any) -> SourceInput:
    """What torchvision weights say about their input: ``transforms()`` (mean, std, ``crop_size``,
    ``resize_size``) and ``meta["categories"]`` (the class names, in index order; any K names may be
    given instead)."""
    transform, names = weights.transforms(), tuple(weights.meta["categories"])
    crop, resize = getattr(transform, "crop_size", None), getattr(transform, "resize_size", None)
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    where = f"torchvision's {type(weights).__name__}.{weights.name} (transforms(), meta['categories'])"
    return SourceInput(
        where=where,
        num_classes=len(names),
        class_names=names,
        in_channels=3,
        mean=tuple(map(float, mean)) if mean is not None else None,
        std=tuple(map(float, std)) if std is not None else None,
        image_size=int(crop[0]) if crop else None,
        eval_resize=int(resize[0]) if resize else None,
        names_must_match=False,
        no_names="no categories",
    )


def _pretrained(models: ModuleType, arch: str, name: str, weights: Any, spec: str) -> nn.Module:
    """``get_model(name, weights=weights)``: torchvision's builder downloads (or reads the cached) file.

    Raises:
        TeacherLoadError: a model without BatchNorm (before the download), ``HF_HUB_OFFLINE`` set with
            nothing cached, or the download / load failing.
    """
    with torch.device("meta"):  # the skeleton, no memory: refuse a model without BatchNorm before downloading
        skeleton = instantiate(
            arch,
            lambda num_classes, in_channels=3: models.get_model(name, weights=None, num_classes=num_classes),
            len(weights.meta["categories"]),
            3,
        )
    check_batchnorm(skeleton, arch)
    refuse_offline(spec, weights.url)
    try:
        return models.get_model(name, weights=weights, progress=False)
    except Exception as err:  # URLError / OSError offline, RuntimeError on a hash mismatch, a bad file
        raise TeacherLoadError(
            f"cannot download or read {spec} from {weights.url} ({type(err).__name__}: {err}); "
            f"if this machine is offline, {offline_advice(weights.url)}"
        ) from err


def build_torchvision_teacher(
    arch: str, weights: str | os.PathLike | None, num_classes: int, in_channels: int = 3
) -> nn.Module:
    """``nayer_scale.models.sources.build_teacher`` for ``teacher.arch=torchvision:<name>``.

    Checks, in this order: the weights file exists (a local file) or the weights enum parses and
    belongs to the model; 3 input channels; the weights' class count is ``num_classes`` (before any
    download); the model builds and has BatchNorm layers (before any download); the weights download
    / the file's keys and shapes fit; the classifier has ``num_classes`` outputs.

    Returns:
        the model on the CPU, float32, eval() mode, ``requires_grad`` False, mapping (N, 3, H, W) float
        input to (N, num_classes) logits.

    Raises:
        MissingExtraError: torchvision is not installed. TeacherLoadError: for each failed check, saying
            what to change.
    """
    models = torchvision_models(f"teacher.arch={arch}")
    name = _model_name(arch, models)
    spec = None if weights is None else str(weights)
    if spec is not None and not is_torchvision_spec(spec) and not Path(spec).expanduser().is_file():
        raise TeacherLoadError(f"teacher weights file {spec} does not exist")
    enum = _weights_of(spec, name, models) if spec is not None and is_torchvision_spec(spec) else None
    if in_channels != 3:
        raise TeacherLoadError(
            f"teacher.arch={arch}: torchvision models take 3-channel input, not in_channels="
            f"{in_channels}: set teacher.in_channels=3 (and 3-channel teacher.mean / teacher.std)"
        )
    if enum is not None:
        check_torchvision_fit(spec, arch, num_classes, in_channels)  # the class count, before the download
        model = _pretrained(models, arch, name, enum, spec)
    else:
        model = instantiate(
            arch,
            lambda num_classes, in_channels=3: models.get_model(name, weights=None, num_classes=num_classes),
            num_classes,
            in_channels,
        )
        check_classifier(model, arch, num_classes)
        if spec is not None:
            load_checked(model, load_state_dict_file(spec), spec, arch)
    check_classifier(model, arch, num_classes)
    check_batchnorm(model, arch)
    return model.float().eval().requires_grad_(False)


def resolve_torchvision_teacher(cfg: NayerConfig) -> ResolvedTeacher:
    """The ``teacher`` section (and ``eval.resize``) of a run with ``teacher.arch=torchvision:<name>``:
    with weights that torchvision names (an enum name, or a file named as its download), fields left
    at their defaults filled from the weights' ``transforms()`` and ``meta["categories"]`` by the rule
    of :mod:`nayer_scale.models.inputs`; otherwise the config's own. ``cfg`` is not changed.

    Raises:
        MissingExtraError: torchvision is not installed. TeacherLoadError: an unknown model or weights.
        ConfigError: settings that disagree with the weights'; the default preset's demo weights left
            in ``teacher.weights``; ``teacher.class_names=id2label`` without weights that name classes.
    """
    t = cfg.teacher
    models = torchvision_models(f"teacher.arch={t.arch}")
    name = _model_name(t.arch, models)
    enum_name = models.get_model_weights(name).__name__
    refuse_demo_weights(
        t, f"torchvision's weights of {name} by name (e.g. {enum_name}.DEFAULT, downloaded once) or a local file"
    )
    weights = _weights_of(t.weights, name, models)
    if weights is None:
        if t.class_names == OWN_NAMES:
            raise ConfigError(
                f"teacher.class_names={OWN_NAMES} with teacher.arch={t.arch} needs weights that name "
                f"their classes (e.g. teacher.weights={enum_name}.DEFAULT): set teacher.class_names to "
                "a dataset key or a .txt file"
            )
        return ResolvedTeacher(t, cfg.eval.resize, resolve_class_names(t.class_names))
    return resolve_source_input(cfg, torchvision_input(weights))
