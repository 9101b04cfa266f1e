"""Where a teacher comes from: ONE registry of teacher sources, and :func:`build_teacher` /
:func:`resolve_teacher`, which dispatch through it.

A source is told by the value of ``teacher.arch`` (:class:`TeacherSource`) or of ``teacher.weights``
(:class:`WeightsSource`); both kinds live in this registry, tried in order, the first that recognises
the value wins:

    teacher.arch                   source       module                              weights
    -----------------------------  -----------  ----------------------------------  ----------------------------
    hf:<hub id or folder>          hf           transformers / timm / nayer-scale   the folder's (models.hf)
    torchvision:<name>             torchvision  torchvision.models.get_model        teacher.weights, read by it
    timm:<name>                    timm         timm.create_model                   teacher.weights
    <zoo name> (no colon)          zoo          nayer_scale.models.build_model      teacher.weights
    package.module:factory         factory      the imported factory                teacher.weights

    teacher.weights                  source             read with
    -------------------------------  -----------------  ------------------------------------------------
    <Model>_Weights.<NAME>           torchvision-enum   torch.hub (URL of torchvision's enum; models.hub)
    torchvision:<arch>.<WEIGHTS>     torchvision        torch.hub (models.hub)
    hf-hub:<org>/<repo>[/<file>]     hf-hub             huggingface_hub.hf_hub_download (models.hub)
    a local .safetensors / .pth      file               models.io.load_state_dict_file

A source that builds the whole teacher itself (``hf``: the folder's weights; ``torchvision``: its
builder reads ``teacher.weights``) has ``build``; the others give a module factory, and the teacher is
built by the checked steps of :mod:`nayer_scale.models.teacher`. A source may know its input settings
(normalisation, size, class names: ``resolve``; ``hf``, ``torchvision``, ``timm``). A new kind is one
:func:`register_source` call. torchvision and timm are imported only when a teacher names them (the
``vision`` extra).

NAYER (Tran et al., CVPR 2024) synthesises images whose batch statistics match the teacher's
BatchNorm running statistics, so every source ends with a teacher that has BatchNorm layers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import NayerConfig
from ..lte.classnames import resolve_class_names
from .hf import build_hf_teacher, is_hf_arch, resolve_hf_teacher
from .hub import (
    HF_HUB_PREFIX,
    TORCHVISION_PREFIX,
    check_torchvision_fit,
    hf_hub_file,
    is_weights_enum_name,
    load_hf_hub_weights,
    load_torchvision_weights,
    torchvision_weights,
)
from .io import TeacherLoadError, load_state_dict_file
from .teacher import (
    Factory,
    ResolvedTeacher,
    check_batchnorm,
    check_classifier,
    import_factory,
    instantiate,
    load_checked,
    zoo_factory,
)
from .timm_teacher import is_timm_arch, resolve_timm_teacher, timm_factory
from .torchvision_teacher import build_torchvision_teacher, is_torchvision_arch, resolve_torchvision_teacher

__all__ = [
    "TeacherSource",
    "WeightsSource",
    "build_teacher",
    "is_hub_spec",
    "load_hub_weights",
    "register_source",
    "registered_sources",
    "resolve_architecture",
    "resolve_teacher",
    "teacher_source",
    "weights_source",
]

Weights = str | os.PathLike


@dataclass(frozen=True)
class TeacherSource:
    """A kind of ``teacher.arch``.

    Attributes:
        kind: its name ("hf", "zoo", "factory").
        recognises: ``recognises(arch)``: whether ``arch`` is of this kind.
        factory: ``factory(arch) -> f(num_classes, in_channels=3) -> nn.Module`` for a source whose
            weights come from ``teacher.weights`` (a :class:`WeightsSource`); None for one that
            carries its own weights.
        build: ``build(arch, weights, num_classes, in_channels) -> nn.Module``, the whole teacher (on the
            CPU, eval() mode, no gradients), for a source that builds it itself; None otherwise.
        reads_weights: whether a ``build`` source reads ``teacher.weights`` (so that
            ``require_weights`` applies); False: it carries its own (a model folder).
        resolve: ``resolve(cfg) -> ResolvedTeacher``: the input settings the source knows (normalisation,
            size, eval resize, class names), checked against the config; None: the config's own.
    """

    kind: str
    recognises: Callable[[str], bool]
    factory: Callable[[str], Factory] | None = None
    build: Callable[[str, Weights | None, int, int], nn.Module] | None = None
    resolve: Callable[[NayerConfig], ResolvedTeacher] | None = None
    reads_weights: bool = False


@dataclass(frozen=True)
class WeightsSource:
    """A kind of ``teacher.weights``, for the teacher sources with a factory.

    Attributes:
        kind: its name ("torchvision-enum", "torchvision", "hf-hub", "file").
        recognises: ``recognises(weights)``: whether ``weights`` (a string or a path) is of this kind.
        check: ``check(weights)``, before the model is built and without downloading: the file exists,
            the spec parses; TeacherLoadError otherwise.
        load: ``load(weights) -> state dict`` (CPU tensors, wrappers and prefixes removed): read or
            download.
        check_fit: ``check_fit(weights, arch, num_classes, in_channels)``, after the model is built and
            before ``load``: refuse weights that cannot fit before downloading them; None: no such check.
        hub: whether the weights are downloaded (not a local file).
    """

    kind: str
    recognises: Callable[[Weights], bool]
    check: Callable[[Weights], None]
    load: Callable[[Weights], dict[str, torch.Tensor]]
    check_fit: Callable[[Weights, str, int, int], None] | None = None
    hub: bool = False


def _check_file(weights: Weights) -> None:
    if not Path(weights).expanduser().is_file():
        raise TeacherLoadError(f"teacher weights file {weights} does not exist")


def _prefixed(prefix: str) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and value.startswith(prefix)


_TEACHER_SOURCES: list[TeacherSource] = [
    TeacherSource("hf", is_hf_arch, build=build_hf_teacher, resolve=resolve_hf_teacher),
    TeacherSource(
        "torchvision",
        is_torchvision_arch,
        build=build_torchvision_teacher,
        resolve=resolve_torchvision_teacher,
        reads_weights=True,
    ),
    TeacherSource("timm", is_timm_arch, factory=timm_factory, resolve=resolve_timm_teacher),
    TeacherSource("zoo", lambda arch: ":" not in arch, factory=zoo_factory),
    TeacherSource("factory", lambda arch: ":" in arch, factory=import_factory),
]
_WEIGHTS_SOURCES: list[WeightsSource] = [
    WeightsSource(
        "torchvision-enum",
        is_weights_enum_name,
        check=torchvision_weights,
        load=load_torchvision_weights,
        check_fit=check_torchvision_fit,
        hub=True,
    ),
    WeightsSource(
        "torchvision",
        _prefixed(TORCHVISION_PREFIX),
        check=torchvision_weights,
        load=load_torchvision_weights,
        check_fit=check_torchvision_fit,
        hub=True,
    ),
    WeightsSource("hf-hub", _prefixed(HF_HUB_PREFIX), check=hf_hub_file, load=load_hf_hub_weights, hub=True),
    WeightsSource("file", lambda weights: True, check=_check_file, load=load_state_dict_file),
]


def register_source(source: TeacherSource | WeightsSource) -> None:
    """Add a source, tried before those already registered (so a prefixed kind such as
    ``torchvision:<name>`` wins over the ``package.module:factory`` fallback).

    Raises:
        ValueError: a source of that kind is already registered, or a TeacherSource with neither or
            both of ``factory`` and ``build``.
    """
    table = _TEACHER_SOURCES if isinstance(source, TeacherSource) else _WEIGHTS_SOURCES
    if any(s.kind == source.kind for s in table):
        raise ValueError(f"a {type(source).__name__} of kind {source.kind!r} is already registered")
    if isinstance(source, TeacherSource) and (source.factory is None) == (source.build is None):
        raise ValueError(
            f"teacher source {source.kind!r} needs exactly one of factory (weights from "
            "teacher.weights) and build (its own weights)"
        )
    table.insert(0, source)


def registered_sources() -> tuple[list[TeacherSource], list[WeightsSource]]:
    """The registered (teacher sources, weight sources), each in the order they are tried."""
    return list(_TEACHER_SOURCES), list(_WEIGHTS_SOURCES)


def teacher_source(arch: str) -> TeacherSource:
    """The source of ``teacher.arch`` (the first registered one that recognises it)."""
    return next(s for s in _TEACHER_SOURCES if s.recognises(arch))


def weights_source(weights: Weights) -> WeightsSource:
    """The source of ``teacher.weights`` (a local file unless a hub prefix says otherwise)."""
    return next(s for s in _WEIGHTS_SOURCES if s.recognises(weights))


def is_hub_spec(weights: object) -> bool:
    """Whether ``weights`` names hub weights (a torchvision enum name, ``torchvision:...`` or ``hf-hub:...``)
    rather than a file."""
    return isinstance(weights, str) and weights_source(weights).hub


def resolve_architecture(arch: str) -> Factory:
    """A factory ``f(num_classes, in_channels=3) -> nn.Module`` for a zoo name, ``timm:<name>`` or an
    import path.

    Args:
        arch: a name of :func:`nayer_scale.models.list_models` (e.g. ``"resnet20"``), ``timm:<name>``, or
            ``"package.module:factory"``. An imported factory is called as
            ``factory(num_classes=K, in_channels=C)`` when its signature names ``in_channels``, else as
            ``factory(num_classes=K)`` (a ``**kwargs`` factory such as ``torchvision.models:resnet101``
            is not given ``in_channels``).

    Raises:
        TeacherLoadError: unknown zoo name, an import path that does not import, a non-callable, or an
            ``arch`` whose source builds the teacher itself (a model folder, ``torchvision:<name>``).
        MissingExtraError: ``timm:<name>`` without timm.
    """
    source = teacher_source(arch)
    if source.factory is None:
        raise TeacherLoadError(
            f"{arch!r} is built with its weights, not by a factory: load it with build_teacher"
            f"{' or nayer_scale.models.hf.load_model_folder' if source.kind == 'hf' else ''}"
        )
    return source.factory(arch)


def load_hub_weights(spec: str) -> dict[str, torch.Tensor]:
    """Download (or take from the local cache) hub weights and read them as
    :func:`nayer_scale.models.io.load_state_dict_file` does (CPU tensors, dtypes as stored, wrappers
    and prefixes removed).

    Args:
        spec: torchvision weights by their enum name (``ResNet50_Weights.IMAGENET1K_V2``; needs
            torchvision) or as ``torchvision:<arch>.<WEIGHTS>`` (e.g. ``torchvision:resnet50.IMAGENET1K_V2``;
            ``<arch>.DEFAULT`` is torchvision's default; without torchvision, one of
            :data:`nayer_scale.models.hub.TORCHVISION_WEIGHTS`), fetched with
            ``torch.hub.load_state_dict_from_url`` (hash-checked, cached in ``torch.hub.get_dir()/checkpoints``);
            or ``hf-hub:<org>/<repo>[/<file>]`` (e.g. ``hf-hub:timm/resnet50.tv_in1k``), whose ``<file>``
            (default ``model.safetensors``) is fetched with ``huggingface_hub.hf_hub_download`` (cached in
            the Hugging Face cache).

    Raises:
        TeacherLoadError: an unknown or malformed spec; the download fails (no internet, a firewall,
            ``HF_HUB_OFFLINE`` set with nothing cached: the message says to download the file on a
            machine with internet and pass its local path as teacher.weights); huggingface_hub is
            missing; or the file does not hold a state dict of tensors.
    """
    if not is_hub_spec(spec):
        raise TeacherLoadError(
            f"{spec!r} is not a hub spec: use <Model>_Weights.<NAME>, "
            "torchvision:<arch>.<WEIGHTS> or hf-hub:<org>/<repo>"
        )
    return weights_source(spec).load(spec)


def build_teacher(
    arch: str, weights: Weights | None, num_classes: int, in_channels: int = 3, *, require_weights: bool = True
) -> nn.Module:
    """Build the teacher and load its weights, checking everything before any work starts.

    Checks, in this order: the weights file exists (when ``require_weights`` or ``weights`` is given),
    or the hub spec parses; the model builds; its classifier (:func:`nayer_scale.models.get_classifier`)
    has ``num_classes`` outputs; torchvision weights fit (1000 classes, 3 channels, the matching
    ``tv_*`` zoo model) before anything is downloaded; the hub weights download (see
    :func:`load_hub_weights`); the file's keys match the model's (``*.num_batches_tracked`` may be
    absent) and every tensor has the model's shape; the model has a BatchNorm layer (NAYER's
    BN-statistics loss needs the teacher's running statistics). ``torchvision:<name>`` runs the same
    checks in its own builder (:func:`nayer_scale.models.torchvision_teacher.build_torchvision_teacher`).

    Args:
        arch: zoo name, ``timm:<name>`` or ``package.module:factory`` (see :func:`resolve_architecture`);
            ``torchvision:<name>``; or ``hf:<hub id or folder>``: a transformers image classifier, a timm
            repository or a nayer-scale export, weights from the folder
            (:func:`nayer_scale.models.hf.build_hf_teacher`); any registered source.
        weights: .safetensors / .pth file; or hub weights, torchvision's by enum name
            (``ResNet50_Weights.IMAGENET1K_V2``) or ``torchvision:<arch>.<WEIGHTS>`` (e.g.
            ``torchvision:resnet50.IMAGENET1K_V2`` for ``tv_resnet50``) or ``hf-hub:<org>/<repo>[/<file>]``
            (e.g. ``hf-hub:timm/resnet50.tv_in1k``), downloaded once into the torch / Hugging Face cache;
            or None for random weights (only if not ``require_weights``).
        num_classes: number of class names; must equal the classifier width.
        in_channels: input channels (1 for Fashion-MNIST, 3 for CIFAR).
        require_weights: refuse ``weights=None``.

    Returns:
        the model on the CPU, float32 parameters as built, in eval() mode, with ``requires_grad``
        False on every parameter; it maps (N, in_channels, H, W) float input to (N, num_classes) logits.

    Raises:
        TeacherLoadError: for each failed check, saying what to change.
        MissingExtraError: a torchvision / timm teacher or torchvision enum name without the ``vision``
            extra.
    """
    source = teacher_source(arch)
    if source.build is not None and not source.reads_weights:  # a model folder: weights from the folder
        return source.build(arch, weights, num_classes, in_channels)
    if weights is None and require_weights:
        raise TeacherLoadError(
            "teacher.weights is empty: give the teacher's weights file (.safetensors or .pth) "
            "or hub weights (<Model>_Weights.<NAME>, torchvision:<arch>.<WEIGHTS>, "
            "hf-hub:<org>/<repo>)"
        )
    if source.build is not None:  # torchvision:<name>: its builder reads the weights
        return source.build(arch, weights, num_classes, in_channels)
    where = None if weights is None else weights_source(weights)
    if where is not None:
        where.check(weights)
    model = instantiate(arch, source.factory(arch), num_classes, in_channels)
    check_classifier(model, arch, num_classes)
    if where is not None:
        if where.check_fit is not None:  # fail before downloading ~100 MB that cannot fit
            where.check_fit(weights, arch, num_classes, in_channels)
        load_checked(model, where.load(weights), weights, arch)
    check_batchnorm(model, arch)
    return model.eval().requires_grad_(False)


def resolve_teacher(cfg: NayerConfig) -> ResolvedTeacher:
    """The teacher settings of a run, through the source of ``cfg.teacher.arch``: what the source knows
    about its input (``hf:``: the folder's normalisation, size, eval resize and class names, see
    :func:`nayer_scale.models.hf.resolve_hf_teacher`; ``torchvision:``: the weights' ``transforms()`` and
    categories; ``timm:``: the model's ``pretrained_cfg``; rules in :mod:`nayer_scale.models.inputs`), else
    the config's own section and ``eval.resize`` with the class names of ``teacher.class_names``. ``cfg``
    is not changed.

    Raises:
        ConfigError: settings that disagree with the source's; FileNotFoundError / ValueError: class
            names that cannot be read (:func:`nayer_scale.lte.resolve_class_names`); TeacherLoadError.
    """
    source = teacher_source(cfg.teacher.arch)
    if source.resolve is not None:
        return source.resolve(cfg)
    return ResolvedTeacher(cfg.teacher, cfg.eval.resize, resolve_class_names(cfg.teacher.class_names))
