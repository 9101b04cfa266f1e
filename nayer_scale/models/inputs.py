"""The ``teacher.*`` input settings that a teacher source knows (normalisation, input size, eval resize,
class names), merged with a run's config by one rule for every source (``hf:`` folders, ``torchvision:``
weights, ``timm:`` models and timm hub repositories).

The rule (:func:`resolve_source_input`): ``teacher.mean``, ``teacher.std``, ``teacher.in_channels``,
``teacher.image_size`` left at their defaults are filled from the source; a value that differs from
the default and from the source's is refused (ConfigError naming both and what to set) where the
source describes the weights themselves (an ``hf:`` folder, torchvision's named weights); where it
describes only the architecture's usual input (``timm:<name>``'s ``pretrained_cfg``, whatever file
``teacher.weights`` names), a value set in the config wins.
``teacher.class_names`` left at its default (or set to ``id2label``) becomes the source's own names,
recorded as the source's key (``id2label``, or a dataset key such as ``imagenet``); a dataset key or
.txt file is checked against the source: the same names (``names_must_match``, a transformers or
nayer-scale folder, whose ``id2label`` are the names it was trained on) or the same number of names (a
torchvision / timm source, whose names are labels: any list of the same classes may be given; any
number where the source does not describe the weights: the classifier width is checked when the
teacher is built).
``eval.resize`` left at 0 becomes the source's eval resize. The config is not changed: the filled
values come back as a :class:`~nayer_scale.models.teacher.ResolvedTeacher`, which the run applies to its
config (``nayer_scale.training.components``), so that ``config.json`` / ``run.yaml`` record them and a
resumed run compares equal.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config import DEMO_TEACHER, ConfigError, NayerConfig, TeacherConfig
from ..lte.classnames import resolve_class_names
from .teacher import ResolvedTeacher

__all__ = ["OWN_NAMES", "SourceInput", "refuse_demo_weights", "resolve_source_input"]

#: ``teacher.class_names`` value that means "the teacher source's own class names".
OWN_NAMES = "id2label"


@dataclass(frozen=True)
class SourceInput:
    """What a teacher source says about its input (None: it does not say).

    Attributes:
        where: the source, for messages (e.g. ``"/m (preprocessor_config.json)"``).
        num_classes: K, the classifier width.
        class_names: the K names in index order, or None (e.g. only generic ``LABEL_i`` names).
        in_channels, image_size: input channels and side in pixels (square images).
        mean, std: per-channel normalisation of [0, 1] pixels.
        eval_resize: shorter side in pixels before the evaluation centre crop.
        names_key: what ``teacher.class_names`` records for ``class_names`` (``id2label``, or a
            dataset key such as ``imagenet`` when the names are that list).
        names_must_match: a dataset key or .txt file must give exactly ``class_names`` (else only
            K names).
        no_names: what the source has instead of names, for the message when ``class_names`` is None.
        describes_weights: the settings are those of the weights (refuse other values, and another
            number of class names); False: of the architecture's usual input (fill defaults only).
    """

    where: str
    num_classes: int
    class_names: tuple[str, ...] | None
    in_channels: int | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    image_size: int | None
    eval_resize: int | None
    names_key: str = OWN_NAMES
    names_must_match: bool = True
    no_names: str = "no class names"
    describes_weights: bool = True


def refuse_demo_weights(t: TeacherConfig, what: str) -> None:
    """Refuse the default preset's shipped Fashion-MNIST teacher as the weights of another architecture.

    Raises:
        ConfigError: ``t.weights`` is the demo teacher; the message says what to set.
    """
    if t.weights == DEMO_TEACHER:
        raise ConfigError(
            f"teacher.arch={t.arch} keeps teacher.weights at the default preset's Fashion-MNIST "
            f"ResNet-20 ({DEMO_TEACHER}), which does not fit it: set teacher.weights to {what}, or "
            "teacher.weights= (empty) for random weights"
        )


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return not math.isclose(float(a), float(b), rel_tol=1e-4, abs_tol=1e-6)
    return a != b


def _fmt(value: Any) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, (tuple, list)) else str(value)


def _input_fields(t: TeacherConfig, src: SourceInput) -> dict[str, Any]:
    """The ``teacher.*`` input fields that the source fills: those left at their defaults.

    Raises:
        ConfigError: a value set to neither the default nor the source's, or one the source does not
            give left at its default.
    """
    default = TeacherConfig()
    changes = {}
    for name, value in (
        ("in_channels", src.in_channels),
        ("mean", src.mean),
        ("std", src.std),
        ("image_size", src.image_size),
    ):
        mine, unset = getattr(t, name), getattr(default, name)
        if value is None:
            if not _differs(mine, unset) and name != "in_channels":
                raise ConfigError(
                    f"teacher.arch={t.arch}: {src.where} gives no {name}; set teacher.{name} to the "
                    "model's (its training input)"
                )
            continue
        if not _differs(mine, unset):
            changes[name] = tuple(value) if isinstance(value, tuple) else value
        elif _differs(mine, value) and src.describes_weights:
            raise ConfigError(
                f"teacher.{name}={_fmt(mine)} (from the preset, config file or an override) disagrees "
                f"with teacher.arch={t.arch}, whose {src.where} gives {_fmt(value)}: remove the override "
                f"or set teacher.{name}={_fmt(value)}"
            )
    return changes


def _class_names(t: TeacherConfig, src: SourceInput) -> tuple[str, list[str]]:
    """(``teacher.class_names`` to record, the K names): the source's for the default or ``id2label``,
    else the given dataset key or .txt file, checked against the source.

    Raises:
        ConfigError: the source has no names and none are given; names that differ from the source's
            (``names_must_match``), or another number of names than the source's classes (where it
            ``describes_weights``).
    """
    own = list(src.class_names) if src.class_names is not None else None
    if t.class_names in (TeacherConfig().class_names, OWN_NAMES, src.names_key):
        if own is None:
            raise ConfigError(
                f"teacher.arch={t.arch} has {src.no_names}: set teacher.class_names to a dataset key or "
                f"a .txt file with its {src.num_classes} class names"
            )
        return src.names_key, own
    names = resolve_class_names(t.class_names)
    if src.names_must_match and own is not None and names != own:
        raise ConfigError(
            f"teacher.class_names={t.class_names!r} gives {len(names)} names {names[:10]}"
            f"{'...' if len(names) > 10 else ''} but teacher.arch={t.arch} was trained on "
            f"{len(own)} classes {own[:10]}{'...' if len(own) > 10 else ''} "
            f"(its {OWN_NAMES}): set teacher.class_names={OWN_NAMES} to use the model's names"
        )
    if len(names) != src.num_classes and src.describes_weights:
        raise ConfigError(
            f"teacher.class_names={t.class_names!r} gives {len(names)} names, teacher.arch={t.arch} "
            f"has {src.num_classes} classes: give its {src.num_classes} class names"
        )
    return t.class_names, names


def resolve_source_input(cfg: NayerConfig, src: SourceInput, weights: str | None = None) -> ResolvedTeacher:
    """The ``teacher`` section (and ``eval.resize``) of ``cfg`` filled from ``src`` by the rule of the
    module docstring, and the teacher's class names. ``cfg`` is not changed.

    Args:
        cfg: a validated ``NayerConfig``.
        src: what the teacher's source says about its input.
        weights: the ``teacher.weights`` to record (None: keep the config's).

    Returns:
        ``ResolvedTeacher``: a new, validated TeacherConfig, the ``eval.resize`` to use (the source's
        when ``eval.resize`` is 0, the image size is the source's and the resize is at least that) and
        the K class names.

    Raises:
        ConfigError: a ``teacher.*`` value that disagrees with the source's (the message names both and
            what to set), or class names that do not fit (see :func:`_class_names`).
    """
    t = cfg.teacher
    changes = _input_fields(t, src)
    recorded, names = _class_names(t, src)
    teacher = dataclasses.replace(
        t, weights=t.weights if weights is None else weights, class_names=recorded, **changes
    ).validate()
    resize = cfg.eval.resize
    same_size = src.image_size is None or teacher.image_size == src.image_size  # not a config's own size
    if resize == 0 and src.eval_resize and same_size and src.eval_resize >= (teacher.image_size or 0):
        resize = int(src.eval_resize)
    dataclasses.replace(cfg.eval, resize=resize).validate()
    return ResolvedTeacher(teacher, resize, names)
