"""Building a teacher from a module factory, and the checks that every teacher passes before any work.

The factories (:func:`zoo_factory` for a name of the zoo, :func:`import_factory` for
``package.module:factory``) make ``f(num_classes, in_channels=3) -> nn.Module``; :func:`instantiate`,
:func:`check_classifier`, :func:`load_checked` and :func:`check_batchnorm` are the steps that
:func:`nayer_scale.models.sources.build_teacher` runs, in its order, each raising a
:class:`~nayer_scale.models.io.TeacherLoadError` that says what to change.

NAYER (Tran et al., "NAYER: Noisy Layer Data Generation for Efficient and Effective Data-free
Knowledge Distillation", CVPR 2024) synthesises images by matching the teacher's BatchNorm running
statistics, so a teacher must have BatchNorm layers.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import TeacherConfig
from .io import TeacherLoadError
from .registry import build_model, get_classifier, list_models

__all__ = [
    "Factory",
    "ResolvedTeacher",
    "check_batchnorm",
    "check_classifier",
    "has_batchnorm",
    "import_factory",
    "instantiate",
    "load_checked",
    "zoo_factory",
]

#: ``f(num_classes, in_channels=3) -> nn.Module``: a teacher architecture with random weights.
Factory = Callable[..., nn.Module]

_OPTIONAL_SUFFIXES = (".num_batches_tracked",)  # absent from checkpoints of old PyTorch; unused in eval


@dataclass(frozen=True)
class ResolvedTeacher:
    """What a teacher source resolved of a run's config (``nayer_scale.models.sources.resolve_teacher``),
    for the caller to apply to its own config.

    Attributes:
        teacher: the ``teacher`` section to run with (a new, validated TeacherConfig; the given one
            when the source knows nothing about its input).
        eval_resize: the value ``eval.resize`` should take (shorter side in pixels before the centre crop;
            0 = image_size / 0.875).
        class_names: the teacher's K class names in index order.
    """

    teacher: TeacherConfig
    eval_resize: int
    class_names: list[str]


def zoo_factory(arch: str) -> Factory:
    """The factory of zoo model ``arch`` (:func:`nayer_scale.models.build_model`).

    Raises:
        TeacherLoadError: ``arch`` is not in the zoo (the message lists the zoo).
    """
    if arch not in list_models():
        raise TeacherLoadError(
            f"unknown architecture {arch!r}: use a zoo name ({', '.join(list_models())}) "
            "or an import path package.module:factory"
        )
    return lambda num_classes, in_channels=3: build_model(arch, num_classes, in_channels)


def import_factory(arch: str) -> Factory:
    """The factory named by ``package.module:factory`` (dotted attributes allowed after the colon).
    It is called as ``factory(num_classes=K, in_channels=C)`` when its signature names an
    ``in_channels`` parameter, else as ``factory(num_classes=K)``: a ``**kwargs`` factory such as
    ``torchvision.models:resnet101`` forwards its keywords to a constructor that takes no
    ``in_channels``, so it is not given one (it builds its own input channels).

    Raises:
        TeacherLoadError: the module does not import, lacks the name, or the name is not callable.
    """
    module_name, _, attr = arch.partition(":")
    try:
        factory = importlib.import_module(module_name)
        for part in attr.split("."):
            factory = getattr(factory, part)
    except Exception as err:  # ImportError, AttributeError, or an error raised while importing the module
        raise TeacherLoadError(
            f"cannot import teacher factory {arch!r} ({type(err).__name__}: {err}): check the "
            "module is importable (on PYTHONPATH) and defines that name"
        ) from err
    if not callable(factory):
        raise TeacherLoadError(f"teacher factory {arch!r} is a {type(factory).__name__}, not a callable")
    try:
        params = inspect.signature(factory).parameters.values()
        takes_channels = any(p.name == "in_channels" and p.kind is not p.POSITIONAL_ONLY for p in params)
    except (TypeError, ValueError):  # no introspectable signature: pass the documented arguments
        takes_channels = True
    if takes_channels:
        return lambda num_classes, in_channels=3: factory(num_classes=num_classes, in_channels=in_channels)
    return lambda num_classes, in_channels=3: factory(num_classes=num_classes)


def instantiate(arch: str, factory: Factory, num_classes: int, in_channels: int) -> nn.Module:
    """``factory(num_classes=num_classes, in_channels=in_channels)``, checked to be an nn.Module.

    Raises:
        TeacherLoadError: the factory raised (its error is named), or returned something else.
    """
    try:
        model = factory(num_classes=num_classes, in_channels=in_channels)
    except Exception as err:
        raise TeacherLoadError(
            f"building teacher {arch!r} with num_classes={num_classes}, in_channels={in_channels} "
            f"failed: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(model, nn.Module):
        raise TeacherLoadError(f"teacher factory {arch!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def check_classifier(model: nn.Module, arch: str, num_classes: int) -> None:
    """Refuse a model whose classifier (:func:`nayer_scale.models.get_classifier`) does not have
    ``num_classes`` outputs.

    Raises:
        TeacherLoadError: no nn.Linear classifier, or another width.
    """
    try:
        width = get_classifier(model).out_features
    except ValueError as err:
        raise TeacherLoadError(f"{arch} has no nn.Linear classifier: the teacher must end in one") from err
    if width != num_classes:
        raise TeacherLoadError(
            f"the classifier of {arch} has {width} outputs but {num_classes} class names were "
            "given: pass the teacher's own class list"
        )


def _preview(items: list[str]) -> str:
    return ", ".join(items[:10]) + (f", ... ({len(items)} in all)" if len(items) > 10 else "")


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], weights: str | os.PathLike, arch: str) -> None:
    """Load ``state`` into ``model`` after checking that its keys match the model's
    (``*.num_batches_tracked`` may be absent: the model's own value is kept) and that every tensor
    has the model's shape.

    Raises:
        TeacherLoadError: missing / unexpected keys, or tensors of the wrong shape (the first ten named).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise TeacherLoadError(
            f"{weights} does not fit {arch}: missing keys [{_preview(missing)}]; unexpected "
            f"keys [{_preview(unexpected)}] (another architecture or depth?)"
        )
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        raise TeacherLoadError(
            f"{weights} has tensors of the wrong shape for {arch}: {_preview(wrong)} "
            "(another class count, input channel count or width?)"
        )
    model.load_state_dict({**own, **state})


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer (any ``nn.modules.batchnorm._BatchNorm``)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def check_batchnorm(model: nn.Module, arch: str) -> None:
    """Refuse a teacher without BatchNorm: NAYER's BN-statistics loss matches its running statistics.

    Raises:
        TeacherLoadError: ``model`` has no BatchNorm layer.
    """
    if not has_batchnorm(model):
        raise TeacherLoadError(
            f"{arch} has no BatchNorm layer: NAYER matches the teacher's BatchNorm running "
            "statistics and cannot distill a teacher without them"
        )
