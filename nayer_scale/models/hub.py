"""Hub weights for zoo teachers: ``teacher.weights=torchvision:<arch>.<WEIGHTS>`` (the official
torchvision ImageNet-1k files, :data:`TORCHVISION_WEIGHTS`) and ``teacher.weights=hf-hub:<org>/<repo>[/<file>]``
(a safetensors file of a Hugging Face hub repository, e.g. timm's ``resnet50.tv_in1k``).

Each spec is parsed (and a torchvision spec checked against the model it is meant for) before anything
is downloaded; a download that fails says how to fetch the file elsewhere and pass its local path.
:mod:`nayer_scale.models.sources` registers both as weight sources.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .io import TeacherLoadError, clean_state_dict, load_state_dict_file
from .registry import list_models

__all__ = ["HF_HUB_PREFIX", "TORCHVISION_PREFIX", "TORCHVISION_WEIGHTS", "check_torchvision_fit", "hf_hub_file",
           "load_hf_hub_weights", "load_torchvision_weights", "torchvision_weights"]

TORCHVISION_PREFIX, HF_HUB_PREFIX = "torchvision:", "hf-hub:"
_TORCHVISION_DOWNLOADS = "https://download.pytorch.org/models/"
# Official torchvision ImageNet-1k weights (torchvision.models.*_Weights), for the tv_* zoo models.
TORCHVISION_WEIGHTS: dict[str, str] = {
    "resnet18.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "resnet18-f37072fd.pth",
    "resnet34.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "resnet34-b627a593.pth",
    "resnet50.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "resnet50-0676ba61.pth",
    "resnet50.IMAGENET1K_V2": _TORCHVISION_DOWNLOADS + "resnet50-11ad3fa6.pth",
    "mobilenet_v2.IMAGENET1K_V1": _TORCHVISION_DOWNLOADS + "mobilenet_v2-b0353104.pth",
    "mobilenet_v2.IMAGENET1K_V2": _TORCHVISION_DOWNLOADS + "mobilenet_v2-7ebf99e0.pth",
}
_TORCHVISION_DEFAULT = {"resnet18": "IMAGENET1K_V1", "resnet34": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2",
                        "mobilenet_v2": "IMAGENET1K_V2"}  # torchvision's ``*_Weights.DEFAULT``


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def torchvision_weights(spec: str) -> tuple[str, str]:
    """(torchvision arch, download URL) of ``torchvision:<arch>.<WEIGHTS>`` (``<arch>.DEFAULT`` is
    torchvision's default weights of that arch), without downloading.

    Raises:
        TeacherLoadError: a spec that is not one of :data:`TORCHVISION_WEIGHTS`.
    """
    arch, _, tag = spec[len(TORCHVISION_PREFIX):].partition(".")
    key = f"{arch}.{_TORCHVISION_DEFAULT.get(arch, tag) if tag == 'DEFAULT' else tag}"
    if key not in TORCHVISION_WEIGHTS:
        raise TeacherLoadError(f"unknown torchvision weights {spec!r}: use torchvision:<arch>.<WEIGHTS> with one of "
                               f"{', '.join(TORCHVISION_WEIGHTS)} (or <arch>.DEFAULT), or download the weights file "
                               "and pass its local path as teacher.weights")
    return arch, TORCHVISION_WEIGHTS[key]


def check_torchvision_fit(spec: str, arch: str, num_classes: int, in_channels: int) -> None:
    """Refuse torchvision ImageNet weights that cannot fit the teacher, before ~100 MB are downloaded.

    Raises:
        TeacherLoadError: ``arch`` is a zoo model other than the matching ``tv_<arch>``, or the teacher
            is not built for ImageNet (1000 classes, 3 input channels).
    """
    tv_arch = torchvision_weights(spec)[0]
    if arch in list_models() and arch != f"tv_{tv_arch}":
        raise TeacherLoadError(f"{spec} are weights of torchvision's {tv_arch}: set teacher.arch to "
                               f"tv_{tv_arch}, not {arch}")
    if num_classes != 1000 or in_channels != 3:
        raise TeacherLoadError(f"{spec} are ImageNet weights (1000 classes, 3 input channels) but "
                               f"num_classes={num_classes} and in_channels={in_channels} were given: pass "
                               "ImageNet's 1000 class names and teacher.in_channels=3")


def hf_hub_file(spec: str) -> tuple[str, str]:
    """(repo id, file name) of ``hf-hub:<org>/<repo>[/<file>]``; the file defaults to model.safetensors.

    Raises:
        TeacherLoadError: no ``<org>/<repo>`` in the spec.
    """
    parts = spec[len(HF_HUB_PREFIX):].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise TeacherLoadError(f"bad Hugging Face weights {spec!r}: use hf-hub:<org>/<repo> (its model.safetensors, "
                               "e.g. hf-hub:timm/resnet50.tv_in1k) or hf-hub:<org>/<repo>/<file>")
    return "/".join(parts[:2]), "/".join(parts[2:]) or "model.safetensors"


def load_torchvision_weights(spec: str) -> dict[str, torch.Tensor]:
    """The state dict of ``torchvision:<arch>.<WEIGHTS>`` (CPU tensors, wrappers and prefixes removed),
    fetched with ``torch.hub.load_state_dict_from_url`` (hash-checked, cached in
    ``torch.hub.get_dir()/checkpoints``).

    Raises:
        TeacherLoadError: an unknown spec; ``HF_HUB_OFFLINE`` set and the file not cached; the download
            fails (no internet, a firewall, a hash mismatch); the file holds no state dict. The message
            says to download the file on a machine with internet and pass its local path.
    """
    _, url = torchvision_weights(spec)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    advice = (f"download {url} on a machine with internet and pass its local path as teacher.weights "
              f"(or copy it to {cached})")
    if _offline() and not cached.is_file():
        raise TeacherLoadError(f"cannot download {spec}: HF_HUB_OFFLINE is set and {cached} is not cached; "
                               f"{advice}")
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception as err:  # URLError / OSError offline, RuntimeError on a hash mismatch, a bad pickle
        raise TeacherLoadError(f"cannot download or read {spec} from {url} ({type(err).__name__}: {err}); if "
                               f"this machine is offline, {advice}") from err
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
    advice = (f"download {filename} of https://huggingface.co/{repo} on a machine with internet (e.g. "
              f"`hf download {repo} {filename}`) and pass its local path as teacher.weights")
    try:
        import huggingface_hub
    except ImportError as err:
        raise TeacherLoadError(f"{spec} needs huggingface_hub (pip install huggingface_hub); or {advice}") from err
    try:
        path = huggingface_hub.hf_hub_download(repo_id=repo, filename=filename)
    except Exception as err:  # offline, HF_HUB_OFFLINE with nothing cached, unknown repo or file, ...
        raise TeacherLoadError(f"cannot download {spec} ({type(err).__name__}: {err}); if this machine is "
                               f"offline (or HF_HUB_OFFLINE is set), {advice}") from err
    return load_state_dict_file(path)
