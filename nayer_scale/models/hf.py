"""Hub-style model folders as teachers: ``teacher.arch=hf:<hub id or local folder>``.

Three kinds of folder (or hub repository) are understood, told apart by their ``config.json``:

* a ``transformers`` image classifier (``model_type`` in ``config.json``), loaded with
  ``AutoModelForImageClassification`` (ResNet, MobileNetV2, EfficientNet, RegNet, ...): the input
  normalisation and size come from its ``preprocessor_config.json`` (``image_mean``, ``image_std``,
  ``size`` / ``crop_size`` / ``crop_pct``), the input channels from ``num_channels``, the class names
  from ``id2label``. :class:`HFImageClassifier` wraps it so that it maps (N, C, H, W) float input to
  (N, K) logits (the ``logits`` of the output object), as every zoo model does.
* a nayer-scale export (``"library_name": "nayer-scale"``, written by
  :func:`nayer_scale.models.io.save_model_folder`, e.g. a distilled student from
  ``python -m nayer_scale.export``): a zoo architecture, ``model.safetensors``
  and the same fields in ``config.json``; so a distilled student can itself become a teacher.
* a timm repository (``architecture`` and ``pretrained_cfg`` in ``config.json``, e.g.
  ``timm/resnet50.a1_in1k``): built with timm, or without timm from the zoo for timm's ResNet-18/34/50
  (same keys), normalisation and size from ``pretrained_cfg``, ImageNet's class names for 1000
  classes (:mod:`nayer_scale.models.timm_teacher`).

NAYER (Tran et al., CVPR 2024) synthesises images whose batch statistics match the running mean and
variance of the teacher's BatchNorm layers (the BN-statistics loss), so a teacher without BatchNorm
(ConvNeXt, ViT: LayerNorm) is refused, by building the model skeleton on the meta device from
``config.json`` before any weights are downloaded.

How the ``teacher.*`` fields meet the model folder (:func:`resolve_hf_teacher`, by the rule of
:mod:`nayer_scale.models.inputs` that every source with input settings follows): ``teacher.mean``,
``teacher.std``, ``teacher.in_channels``, ``teacher.image_size`` left at their defaults are filled
from the folder; a value that differs from the default and from the folder's is refused
(ConfigError naming both and what to set). ``teacher.class_names`` left at its default (or set to
``id2label``) becomes the model's ``id2label`` names and is recorded as ``id2label``; a dataset key or
.txt file is compared with ``id2label`` (and used instead of it when the model has only generic
``LABEL_i`` names; a timm repository takes any K names). ``teacher.weights`` must be empty: the
weights are the folder's (the shipped Fashion-MNIST teacher that the default preset names is
dropped). ``eval.resize`` left at 0 becomes the image processor's resize. The given config is not
changed: the filled values come back as a
:class:`~nayer_scale.models.teacher.ResolvedTeacher`, which the run applies to its config
(``nayer_scale.training.components``), so that ``config.json`` / ``run.yaml`` record them and a
resumed run compares equal.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DEMO_TEACHER, ConfigError, NayerConfig
from ..extras import require
from .inputs import SourceInput, resolve_source_input
from .io import NAYER_LIBRARY, TeacherLoadError, load_state_dict_file
from .registry import build_model
from .teacher import ResolvedTeacher, has_batchnorm
from .timm_teacher import build_timm_folder_model, is_timm_config, load_timm_folder, timm_folder_config

__all__ = [
    "HF_PREFIX",
    "HFImageClassifier",
    "HFModelSpec",
    "build_hf_teacher",
    "is_hf_arch",
    "load_model_folder",
    "read_hf_model_spec",
    "resolve_hf_teacher",
]

HF_PREFIX = "hf:"
_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.md"]


def is_hf_arch(arch: object) -> bool:
    """Whether ``teacher.arch`` names a hub-style model folder (``hf:<hub id or folder>``)."""
    return isinstance(arch, str) and arch.startswith(HF_PREFIX)


@dataclass(frozen=True)
class HFModelSpec:
    """What a model folder's JSON files say (no weights read).

    Attributes:
        source: the hub id or folder as given; folder: the local folder holding ``config.json``.
        kind: "transformers", "nayer-scale" or "timm"; model_name: the transformers class, zoo
            architecture or timm architecture.
        num_classes: K; class_names: the ``id2label`` names in index order, None if only generic
            ``LABEL_i`` names; in_channels: input channels.
        mean, std: per-channel normalisation of [0, 1] pixels (None if the folder has none).
        image_size: input side in pixels (None if unknown); eval_resize: shorter side before the
            centre crop in the image processor's evaluation transform (None if unknown).
        config: the parsed ``config.json``.
        model_args: the timm model arguments (``config.json``'s ``model_args`` and ``num_classes``).
    """

    source: str
    folder: Path
    kind: str
    model_name: str
    num_classes: int
    class_names: tuple[str, ...] | None
    in_channels: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    image_size: int | None
    eval_resize: int | None
    config: dict = field(repr=False, compare=False)
    model_args: dict = field(default_factory=dict, repr=False, compare=False)


def _is_local(source: str) -> bool:
    return Path(source).expanduser().exists() or source.startswith(("/", ".", "~")) or source.count("/") > 1


def _local_folder(source: str, files: list[str] | None) -> Path:
    """The local folder of ``source``: the folder itself, or a hub snapshot holding ``files`` (JSON
    only) or, with ``files=None``, the weights too (``huggingface_hub``: cached, resumable)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if _is_local(source):
        raise TeacherLoadError(
            f"teacher.arch=hf:{source}: the folder {path} does not exist; give a model folder "
            "(config.json + weights) or a hub id such as microsoft/resnet-50"
        )
    import huggingface_hub

    advice = (
        f"if this machine is offline, download it on one with internet (`hf download {source} "
        f"--local-dir <folder>`) and set teacher.arch=hf:<folder>"
    )
    try:
        if files is None:
            return Path(huggingface_hub.snapshot_download(source, allow_patterns=_WEIGHT_PATTERNS))
        folder = None
        for name in files:
            try:
                folder = Path(huggingface_hub.hf_hub_download(source, name)).parent
            except huggingface_hub.errors.EntryNotFoundError:
                if name == "config.json":
                    raise
        return folder
    except Exception as err:
        raise TeacherLoadError(
            f"cannot download teacher.arch=hf:{source} ({type(err).__name__}: {err}); {advice}"
        ) from err


def _side(value: Any, what: str, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if "shortest_edge" in value:
        return int(value["shortest_edge"])
    if "height" in value and "width" in value:
        if value["height"] != value["width"]:
            raise TeacherLoadError(
                f"teacher.arch=hf:{source}: {what} {value} is not square; nayer-scale synthesises "
                "square images: use a model with a square input size"
            )
        return int(value["height"])
    return None


def _input_size(pre: dict, config: dict, source: str) -> tuple[int | None, int | None]:
    """(image_size, eval_resize) of an image processor config (transformers' conventions): a
    centre crop (``crop_size``) after resizing the shorter side to ``size``; ConvNeXt-style
    ``crop_pct`` (shorter side to ``size / crop_pct``, crop ``size``, below 384 px); else ``size``."""
    size, crop = pre.get("size"), pre.get("crop_size")
    if crop is not None and pre.get("do_center_crop", True):
        image_size = _side(crop, "crop_size", source)
        resize = _side(size, "size", source) if isinstance(size, dict) and "shortest_edge" in size else image_size
        return image_size, resize
    side = _side(size, "size", source)
    if side is not None:
        pct = pre.get("crop_pct")
        if (
            isinstance(size, (dict, int))
            and pct
            and (not isinstance(size, dict) or "shortest_edge" in size)
            and side < 384
        ):
            return side, int(round(side / pct))
        return side, side
    fallback = config.get("image_size")
    return (int(fallback), None) if isinstance(fallback, int) else (None, None)


def _meta_model(folder: Path, source: str):
    """The transformers model built on the meta device from config.json (no weights, no memory)."""
    transformers = require("transformers", "hf", f"teacher.arch=hf:{source}")
    AutoConfig, AutoModelForImageClassification = transformers.AutoConfig, transformers.AutoModelForImageClassification

    try:
        config = AutoConfig.from_pretrained(str(folder))
        with torch.device("meta"):
            return AutoModelForImageClassification.from_config(config)
    except Exception as err:  # an unknown model_type, not an image classifier
        raise TeacherLoadError(
            f"teacher.arch=hf:{source} is not a transformers image classifier "
            f"(AutoModelForImageClassification: {type(err).__name__}: {err}); use a model with an "
            "image-classification head (e.g. microsoft/resnet-50)"
        ) from err


def _check_batchnorm(model: nn.Module, source: str) -> None:
    if has_batchnorm(model):
        return
    norms = ", ".join(sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__}))
    raise TeacherLoadError(
        f"teacher.arch=hf:{source} ({type(model).__name__}) has no BatchNorm layer"
        f"{f' (it normalises with {norms})' if norms else ''}: NAYER's BN-statistics loss makes the "
        "synthetic images match the running mean and variance that each BatchNorm layer of the teacher recorded on "
        "its training data, and a model without BatchNorm has no such statistics to match. Use a BatchNorm teacher "
        "(ResNet, MobileNetV2, EfficientNet, RegNet)"
    )


def read_hf_model_spec(source: str, check_batchnorm: bool = True) -> HFModelSpec:
    """Read a model folder's ``config.json`` (and ``preprocessor_config.json``), downloading only
    those from the hub for a hub id, and check that it can be a NAYER teacher.

    Args:
        source: a local folder or a hub id (``hf:`` prefix allowed).
        check_batchnorm: refuse a model without BatchNorm layers (built on the meta device).

    Returns:
        ``HFModelSpec``.

    Raises:
        TeacherLoadError: the folder or hub repository cannot be read, has no ``config.json``, is not an
            image classifier, has no BatchNorm layer (the message says why NAYER needs it), or has a
            non-square input size.
    """
    source = source[len(HF_PREFIX) :] if source.startswith(HF_PREFIX) else source
    folder = _local_folder(source, ["config.json", "preprocessor_config.json"])
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TeacherLoadError(
            f"teacher.arch=hf:{source}: no config.json in {folder}; give a transformers model "
            "folder (save_pretrained) or a nayer-scale export (python -m nayer_scale.export)"
        )
    config = json.loads(config_path.read_text())
    if config.get("library_name") == NAYER_LIBRARY:
        return _nayer_spec(source, folder, config)
    if is_timm_config(config):
        return _timm_spec(source, folder, config, check_batchnorm)
    if "model_type" not in config:
        raise TeacherLoadError(
            f"teacher.arch=hf:{source}: {config_path} has no model_type (transformers) nor "
            "architecture + pretrained_cfg (timm); give a transformers model folder "
            "(save_pretrained), a timm repository (e.g. timm/resnet50.a1_in1k) or a nayer-scale "
            "export (python -m nayer_scale.export)"
        )
    return _transformers_spec(source, folder, config, check_batchnorm)


def _nayer_spec(source: str, folder: Path, config: dict) -> HFModelSpec:
    """The spec of a nayer-scale export, read from its ``config.json`` alone."""
    names = tuple(config["class_names"])
    return HFModelSpec(
        source,
        folder,
        "nayer-scale",
        config["architecture"],
        len(names),
        names,
        int(config["in_channels"]),
        tuple(config["mean"]),
        tuple(config["std"]),
        int(config["image_size"]),
        config.get("eval_resize"),
        config,
    )


def _transformers_spec(source: str, folder: Path, config: dict, check_batchnorm: bool) -> HFModelSpec:
    """The spec of a transformers folder; its BatchNorm check builds the model on the meta device."""
    model = _meta_model(folder, source)
    if check_batchnorm:
        _check_batchnorm(model, source)
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    num_classes = len(id2label) or int(config.get("num_labels", 2))
    names = tuple(id2label.get(i, f"LABEL_{i}") for i in range(num_classes))
    if all(_GENERIC_LABEL.match(n) for n in names):
        names = None
    pre_path = folder / "preprocessor_config.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
    mean, std = pre.get("image_mean"), pre.get("image_std")
    image_size, resize = _input_size(pre, config, source)
    in_channels = int(config.get("num_channels", 3))
    if mean is not None and len(mean) != in_channels:  # a grey model with ImageNet's 3-channel default
        mean, std = None, None
    return HFModelSpec(
        source,
        folder,
        "transformers",
        type(model).__name__,
        num_classes,
        names,
        in_channels,
        tuple(map(float, mean)) if mean is not None else None,
        tuple(map(float, std)) if std is not None else None,
        image_size,
        resize,
        config,
    )


def _timm_spec(source: str, folder: Path, config: dict, check_batchnorm: bool) -> HFModelSpec:
    """The spec of a timm repository; its BatchNorm check builds the model on the meta device (timm, or
    the zoo's equivalent without timm)."""
    where = f"teacher.arch=hf:{source}"
    architecture, model_args, src = timm_folder_config(config, where)
    if check_batchnorm:
        _check_batchnorm(build_timm_folder_model(architecture, model_args, where, meta=True), source)
    return HFModelSpec(
        source,
        folder,
        "timm",
        architecture,
        src.num_classes,
        src.class_names,
        src.in_channels,
        src.mean,
        src.std,
        src.image_size,
        src.eval_resize,
        config,
        model_args,
    )


class HFImageClassifier(nn.Module):
    """A transformers image classifier as a zoo-style classifier: float (N, C, H, W) input,
    normalised as its image processor does, to (N, K) logits (``output.logits``).

    Args:
        model: an ``AutoModelForImageClassification`` instance (kept as ``self.model``, so its
            BatchNorm layers and final nn.Linear are found by ``BNStatsHooks`` / ``get_classifier``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def load_model_folder(source: str) -> tuple[nn.Module, HFModelSpec]:
    """Load a model folder (or hub repository) of either kind, on the CPU in float32.

    Returns:
        (model, spec): the model in eval() mode (``HFImageClassifier`` for transformers, a zoo model
        for a nayer-scale export), mapping (N, C, H, W) float input to (N, K) logits.

    Raises:
        TeacherLoadError: as ``read_hf_model_spec``, or weights that do not load.
    """
    spec = read_hf_model_spec(source)
    if spec.kind == NAYER_LIBRARY:
        model = build_model(spec.model_name, spec.num_classes, spec.in_channels)
        state = load_state_dict_file(spec.folder / "model.safetensors")
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise TeacherLoadError(f"{spec.folder}/model.safetensors does not fit {spec.model_name}: {err}") from err
        return model.eval(), spec
    if spec.kind == "timm":
        folder = spec.folder if Path(spec.source).expanduser().is_dir() else _local_folder(spec.source, None)
        where = f"teacher.arch=hf:{spec.source}"
        return load_timm_folder(folder, spec.model_name, spec.model_args, where), spec
    AutoModelForImageClassification = require(
        "transformers", "hf", "teacher.arch=hf:..."
    ).AutoModelForImageClassification

    folder = spec.folder if Path(spec.source).expanduser().is_dir() else _local_folder(spec.source, None)
    try:
        model = AutoModelForImageClassification.from_pretrained(str(folder), dtype=torch.float32)
    except Exception as err:
        raise TeacherLoadError(
            f"cannot load the weights of teacher.arch=hf:{spec.source} from {folder} ({type(err).__name__}: {err})"
        ) from err
    return HFImageClassifier(model).eval(), spec


def build_hf_teacher(arch: str, weights: str | os.PathLike | None, num_classes: int, in_channels: int) -> nn.Module:
    """``nayer_scale.models.sources.build_teacher`` for ``teacher.arch=hf:<hub id or folder>``.

    Returns:
        the teacher on the CPU, float32, eval() mode, ``requires_grad`` False, mapping
        (N, in_channels, H, W) float input to (N, num_classes) logits.

    Raises:
        TeacherLoadError: ``weights`` given (the folder holds them); a class or channel count other
            than the model's; anything ``read_hf_model_spec`` / ``load_model_folder`` refuses.
    """
    source = arch[len(HF_PREFIX) :]
    if weights:
        raise TeacherLoadError(
            f"teacher.weights={weights} with teacher.arch={arch}: the weights are the model "
            "folder's; set teacher.weights= (empty)"
        )
    spec = read_hf_model_spec(source)
    if spec.num_classes != num_classes:
        raise TeacherLoadError(
            f"teacher.arch={arch} has {spec.num_classes} classes but {num_classes} class names "
            "were given: set teacher.class_names=id2label (the model's own names)"
        )
    if spec.in_channels != in_channels:
        raise TeacherLoadError(
            f"teacher.arch={arch} takes {spec.in_channels} input channels, not {in_channels}: "
            f"set teacher.in_channels={spec.in_channels}"
        )
    model, _ = load_model_folder(source)
    return model.eval().requires_grad_(False)


def _source_input(spec: HFModelSpec) -> SourceInput:
    """What the folder says about its input, for :func:`nayer_scale.models.inputs.resolve_source_input`."""
    where = f"{spec.folder} ({'preprocessor_config.json' if spec.kind == 'transformers' else 'config.json'})"
    timm = spec.kind == "timm"
    return SourceInput(
        where=where,
        num_classes=spec.num_classes,
        class_names=spec.class_names,
        in_channels=spec.in_channels,
        mean=spec.mean,
        std=spec.std,
        image_size=spec.image_size,
        eval_resize=spec.eval_resize,
        names_must_match=not timm,
        no_names=(
            f"{spec.num_classes} classes and no label names in its config.json"
            if timm
            else "only generic id2label names (LABEL_0, LABEL_1, ...)"
        ),
    )


def resolve_hf_teacher(cfg: NayerConfig) -> ResolvedTeacher:
    """The ``teacher`` section (and ``eval.resize``) of a run with an ``hf:`` teacher, filled from the
    teacher's folder, and its class names (see the module docstring for the rules). ``cfg`` is not
    changed: the caller applies the result to its config.

    Args:
        cfg: a validated ``NayerConfig`` whose ``teacher.arch`` starts with ``hf:``.

    Returns:
        ``ResolvedTeacher``: a new, validated TeacherConfig (``weights`` empty, ``class_names``
        ``id2label`` when the model's names are used, input fields left at their defaults filled
        from the folder), the ``eval.resize`` to use (the image processor's resize when ``eval.resize``
        is 0) and the teacher's K class names in index order.

    Raises:
        ConfigError: a ``teacher.*`` value that disagrees with the folder's (the message names both and
            what to set), ``teacher.weights`` set, class names that disagree with ``id2label``, or a
            value the folder does not give and the config leaves at its default.
        TeacherLoadError: as ``read_hf_model_spec`` (no BatchNorm, no config.json, ...).
    """
    t, source = cfg.teacher, cfg.teacher.arch[len(HF_PREFIX) :]
    if t.weights and t.weights != DEMO_TEACHER:
        raise ConfigError(
            f"teacher.weights={t.weights} with teacher.arch={t.arch}: the weights are the model "
            "folder's; set teacher.weights= (empty)"
        )
    spec = read_hf_model_spec(source)
    return resolve_source_input(cfg, _source_input(spec), weights="")
