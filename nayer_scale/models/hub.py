"""Hub weights: torchvision's ImageNet weights, by their enum name (``ResNet50_Weights.IMAGENET1K_V2``,
as ``torchvision.models.get_weight`` takes it) or as ``teacher.weights=torchvision:<arch>.<WEIGHTS>``
(``torchvision:resnet50.IMAGENET1K_V2``; ``<arch>.DEFAULT`` is torchvision's default), and
``teacher.weights=hf-hub:<org>/<repo>[/<file>]`` (a safetensors file of a Hugging Face hub repository,
e.g. timm's ``resnet50.tv_in1k``).

torchvision's weights enums are the one source of their URLs, class names and input transforms. Where
torchvision does not import (the main test environment: PyPI's torchvision needs a torch of its own
build), the ``torchvision:<arch>.<WEIGHTS>`` specs of the zoo's ``tv_*`` models still resolve, through
:data:`TORCHVISION_WEIGHTS`, the URLs of those six weights as torchvision publishes them (kept so that
the configs and checkpoints that load today still load without torchvision; a test of the ``vision``
environment checks every entry against torchvision's enums); an enum name needs torchvision
(``pip install "nayer-scale[vision]"``).

Each spec is parsed (and checked against the model it is meant for) before anything is downloaded; a
download that fails says how to fetch the file elsewhere and pass its local path.
:mod:`nayer_scale.models.sources` registers them as weight sources.
"""

from __future__ import annotations

import importlib
import os
import re
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..extras import require
from .io import TeacherLoadError, clean_state_dict, load_state_dict_file
from .registry import list_models

__all__ = [
    "HF_HUB_PREFIX",
    "TORCHVISION_PREFIX",
    "TORCHVISION_WEIGHTS",
    "check_torchvision_fit",
    "hf_hub_file",
    "is_torchvision_spec",
    "is_weights_enum_name",
    "load_hf_hub_weights",
    "load_torchvision_weights",
    "offline_advice",
    "refuse_offline",
    "torchvision_cache_file",
    "torchvision_models",
    "torchvision_weights",
    "torchvision_weights_enum",
]

TORCHVISION_PREFIX, HF_HUB_PREFIX = "torchvision:", "hf-hub:"
_TORCHVISION_DOWNLOADS = "https://download.pytorch.org/models/"
#: The ``torchvision:<arch>.<WEIGHTS>`` specs of the zoo's tv_* models -> the URL torchvision publishes
#: them at; used only where torchvision does not import (elsewhere its enums give the URL).
TORCHVISION_WEIGHTS: dict[str, str] = {
    "resnet18.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "resnet18-f37072fd.pth",
    "resnet34.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "resnet34-b627a593.pth",
    "resnet50.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "resnet50-0676ba61.pth",
    "resnet50.IMAGENET1K_V2": _TORCHVISION_DOWNLOADS + "resnet50-11ad3fa6.pth",
    "mobilenet_v2.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "mobilenet_v2-b0353104.pth",
    "mobilenet_v2.IMAGENET1K_V2": _TORCHVISION_DOWNLOADS + "mobilenet_v2-7ebf99e0.pth",
}
_TORCHVISION_DEFAULT = {
    "resnet18": "IMAGENET1K_V1",
    "resnet34": "IMAGENET1K_V1",
    "resnet50": "IMAGENET1K_V2",
    "mobilenet_v2": "IMAGENET1K_V2",
}  # torchvision's ``*_Weights.DEFAULT``
_ENUM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*_Weights\.[A-Za-z][A-Za-z0-9_]*")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def is_weights_enum_name(weights: object) -> bool:
    """Whether ``teacher.weights`` is a torchvision weights enum name (``ResNet50_Weights.IMAGENET1K_V2``),
    not a local file."""
    return (
        isinstance(weights, str)
        and _ENUM_NAME.fullmatch(weights) is not None
        and not Path(weights).expanduser().exists()
    )


def is_torchvision_spec(weights: object) -> bool:
    """Whether ``teacher.weights`` names torchvision weights: ``torchvision:<arch>.<WEIGHTS>`` or an enum name."""
    return (isinstance(weights, str) and weights.startswith(TORCHVISION_PREFIX)) or is_weights_enum_name(weights)


def torchvision_models(purpose: str) -> ModuleType:
    """``torchvision.models``, or MissingExtraError naming the ``vision`` extra and ``purpose``."""
    return require("torchvision.models", "vision", purpose)


def _torchvision_if_importable() -> ModuleType | None:
    try:
        return importlib.import_module("torchvision.models")
    except Exception:  # not installed, or PyPI's build failing beside another torch ("torchvision::nms")
        return None


@lru_cache(maxsize=None)
def _model_of_enum(models: ModuleType, enum_class: type) -> str | None:
    """The torchvision model name whose weights enum is ``enum_class``."""
    return next((name for name in models.list_models() if models.get_model_weights(name) is enum_class), None)


def _tags(enum_class: Any, prefix: str) -> str:
    return ", ".join(f"{prefix}{tag}" for tag in enum_class.__members__)


def torchvision_weights_enum(spec: str) -> tuple[str, Any]:
    """(torchvision model name, weights enum member) of an enum name (``ResNet50_Weights.IMAGENET1K_V2``,
    ``ResNet50_Weights.DEFAULT``) or of ``torchvision:<arch>.<WEIGHTS>``, without downloading.

    Raises:
        MissingExtraError: torchvision is not installed. TeacherLoadError: unknown weights (the
            message lists the model's weights).
    """
    models = torchvision_models(f"teacher.weights={spec}")
    if spec.startswith(TORCHVISION_PREFIX):
        arch, _, tag = spec[len(TORCHVISION_PREFIX) :].partition(".")
        try:
            enum_class = models.get_model_weights(arch)
        except (ValueError, KeyError) as err:
            raise TeacherLoadError(
                f"unknown torchvision weights {spec!r}: torchvision has no model {arch!r} "
                "(torchvision.models.list_models()); or download the weights file and pass "
                "its local path as teacher.weights"
            ) from err
        if tag not in enum_class.__members__:
            raise TeacherLoadError(
                f"unknown torchvision weights {spec!r}: use torchvision:<arch>.<WEIGHTS> with one "
                f"of {_tags(enum_class, arch + '.')}, or download the weights file and pass its "
                "local path as teacher.weights"
            )
        return arch, enum_class[tag]
    enum_name, _, tag = spec.partition(".")
    try:
        weights = models.get_weight(spec)
    except KeyError as err:
        enum_class = type(models.get_weight(f"{enum_name}.DEFAULT"))
        raise TeacherLoadError(
            f"unknown torchvision weights {spec!r}: {enum_name} has {_tags(enum_class, enum_name + '.')}"
        ) from err
    except ValueError as err:
        raise TeacherLoadError(
            f"unknown torchvision weights {spec!r}: no enum {enum_name} in torchvision.models "
            "(e.g. ResNet50_Weights.IMAGENET1K_V2; torchvision.models.get_model_weights(<name>) "
            "lists a model's)"
        ) from err
    return _model_of_enum(models, type(weights)) or enum_name, weights


def torchvision_weights(spec: str) -> tuple[str, str]:
    """(torchvision arch, download URL) of torchvision weights (an enum name, or
    ``torchvision:<arch>.<WEIGHTS>``, ``<arch>.DEFAULT`` being torchvision's default), without
    downloading. The URL comes from torchvision's enum; where torchvision does not import, a
    ``torchvision:`` spec is looked up in :data:`TORCHVISION_WEIGHTS`.

    Raises:
        TeacherLoadError: unknown weights. MissingExtraError: an enum name without torchvision.
    """
    if spec.startswith(TORCHVISION_PREFIX) and _torchvision_if_importable() is None:
        arch, _, tag = spec[len(TORCHVISION_PREFIX) :].partition(".")
        key = f"{arch}.{_TORCHVISION_DEFAULT.get(arch, tag) if tag == 'DEFAULT' else tag}"
        if key not in TORCHVISION_WEIGHTS:
            raise TeacherLoadError(
                f"unknown torchvision weights {spec!r}: use torchvision:<arch>.<WEIGHTS> with one "
                f"of {', '.join(TORCHVISION_WEIGHTS)} (or <arch>.DEFAULT; more with torchvision "
                'installed: pip install "nayer-scale[vision]"), or download the weights file and '
                "pass its local path as teacher.weights"
            )
        return arch, TORCHVISION_WEIGHTS[key]
    arch, weights = torchvision_weights_enum(spec)
    return arch, weights.url


def _num_classes(spec: str) -> int:
    if spec.startswith(TORCHVISION_PREFIX) and _torchvision_if_importable() is None:
        return 1000  # every weights of TORCHVISION_WEIGHTS is ImageNet-1k
    return len(torchvision_weights_enum(spec)[1].meta["categories"])


def check_torchvision_fit(spec: str, arch: str, num_classes: int, in_channels: int) -> None:
    """Refuse torchvision weights that cannot fit the teacher, before ~100 MB are downloaded.

    Raises:
        TeacherLoadError: ``arch`` is a zoo model other than the matching ``tv_<arch>`` (or a
            ``torchvision:<name>`` of another model), or the teacher is not built for the weights'
            classes (1000 for ImageNet) and 3 input channels.
    """
    tv_arch = torchvision_weights(spec)[0]
    if (arch in list_models() and arch != f"tv_{tv_arch}") or (
        arch.startswith(TORCHVISION_PREFIX) and arch != TORCHVISION_PREFIX + tv_arch
    ):
        raise TeacherLoadError(
            f"{spec} are weights of torchvision's {tv_arch}: set teacher.arch to "
            f"{'tv_' + tv_arch if arch in list_models() else TORCHVISION_PREFIX + tv_arch}, "
            f"not {arch}"
        )
    classes = _num_classes(spec)
    if num_classes != classes or in_channels != 3:
        raise TeacherLoadError(
            f"{spec} are {'ImageNet ' if classes == 1000 else ''}weights ({classes} classes, 3 "
            f"input channels) but num_classes={num_classes} and in_channels={in_channels} were "
            f"given: pass {'ImageNet' if classes == 1000 else 'their'} {classes} class names and "
            "teacher.in_channels=3"
        )


def torchvision_cache_file(url: str) -> Path:
    """Where ``torch.hub`` keeps the download of ``url`` (``torch.hub.get_dir()/checkpoints/<name>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def offline_advice(url: str) -> str:
    """What to do where ``url`` cannot be downloaded."""
    return (
        f"download {url} on a machine with internet and pass its local path as teacher.weights "
        f"(or copy it to {torchvision_cache_file(url)})"
    )


def refuse_offline(spec: str, url: str) -> None:
    """Raise before any network access when ``HF_HUB_OFFLINE`` is set and ``url`` is not cached.

    Raises:
        TeacherLoadError: naming the cache file and what to do.
    """
    cached = torchvision_cache_file(url)
    if _offline() and not cached.is_file():
        raise TeacherLoadError(
            f"cannot download {spec}: HF_HUB_OFFLINE is set and {cached} is not cached; {offline_advice(url)}"
        )


def hf_hub_file(spec: str) -> tuple[str, str]:
    """(repo id, file name) of ``hf-hub:<org>/<repo>[/<file>]``; the file defaults to model.safetensors.

    Raises:
        TeacherLoadError: no ``<org>/<repo>`` in the spec.
    """
    parts = spec[len(HF_HUB_PREFIX) :].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise TeacherLoadError(
            f"bad Hugging Face weights {spec!r}: use hf-hub:<org>/<repo> (its model.safetensors, "
            "e.g. hf-hub:timm/resnet50.tv_in1k) or hf-hub:<org>/<repo>/<file>"
        )
    return "/".join(parts[:2]), "/".join(parts[2:]) or "model.safetensors"


def load_torchvision_weights(spec: str) -> dict[str, torch.Tensor]:
    """The state dict of torchvision weights (an enum name or ``torchvision:<arch>.<WEIGHTS>``; CPU
    tensors, wrappers and prefixes removed), fetched with ``torch.hub.load_state_dict_from_url``
    (hash-checked, cached in ``torch.hub.get_dir()/checkpoints``).

    Raises:
        TeacherLoadError: an unknown spec; ``HF_HUB_OFFLINE`` set and the file not cached; the download
            fails (no internet, a firewall, a hash mismatch); the file holds no state dict. The message
            says to download the file on a machine with internet and pass its local path.
    """
    _, url = torchvision_weights(spec)
    refuse_offline(spec, url)
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception as err:  # URLError / OSError offline, RuntimeError on a hash mismatch, a bad pickle
        raise TeacherLoadError(
            f"cannot download or read {spec} from {url} ({type(err).__name__}: {err}); if "
            f"this machine is offline, {offline_advice(url)}"
        ) from err
    return clean_state_dict(state, spec)


def load_hf_hub_weights(spec: str) -> dict[str, torch.Tensor]:
    """The state dict of ``hf-hub:<org>/<repo>[/<file>]``, whose ``<file>`` (default
    ``model.safetensors``) is fetched with ``huggingface_hub.hf_hub_download`` (cached in the Hugging
    Face cache) and read by :func:`nayer_scale.models.io.load_state_dict_file`.

    Raises:
        TeacherLoadError: a malformed spec; huggingface_hub missing; the download fails (offline,
            ``HF_HUB_OFFLINE`` with nothing cached, an unknown repo or file); the file holds no state dict.
    """
    repo, filename = hf_hub_file(spec)
    advice = (
        f"download {filename} of https://huggingface.co/{repo} on a machine with internet (e.g. "
        f"`hf download {repo} {filename}`) and pass its local path as teacher.weights"
    )
    try:
        import huggingface_hub
    except ImportError as err:
        raise TeacherLoadError(f"{spec} needs huggingface_hub (pip install huggingface_hub); or {advice}") from err
    try:
        path = huggingface_hub.hf_hub_download(repo_id=repo, filename=filename)
    except Exception as err:  # offline, HF_HUB_OFFLINE with nothing cached, unknown repo or file, ...
        raise TeacherLoadError(
            f"cannot download {spec} ({type(err).__name__}: {err}); if this machine is "
            f"offline (or HF_HUB_OFFLINE is set), {advice}"
        ) from err
    return load_state_dict_file(path)
