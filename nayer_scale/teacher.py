"""Bring your own teacher: build a zoo model or ``package.module:factory``, load a weights file
(safetensors or .pth) or hub weights (``torchvision:resnet50.IMAGENET1K_V2``,
``hf-hub:timm/resnet50.tv_in1k``), and reject bad input with a clear error before any work starts.

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

__all__ = ["TORCHVISION_WEIGHTS", "TeacherLoadError", "build_teacher", "is_hub_spec", "load_hub_weights",
           "load_state_dict_file", "read_metadata", "resolve_architecture", "save_model"]

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "teacher")
_PREFIXES = ("module.", "_orig_mod.")
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)  # absent from checkpoints of old PyTorch; unused in eval

_TORCHVISION, _HF_HUB = "torchvision:", "hf-hub:"
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
    if arch.startswith("hf:"):
        raise TeacherLoadError(f"{arch!r} is a model folder, not a factory: load it with build_teacher or "
                               "nayer_scale.hf_models.load_model_folder")
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
    return _clean_state(state, path)


def _clean_state(state: object, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Unwrap checkpoint wrappers and strip shared ``module.`` / ``_orig_mod.`` prefixes of a loaded
    object; TeacherLoadError (naming ``source``) unless it holds a non-empty dict of tensors."""
    state = _unwrap(state)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = f"a dict with keys {list(state)[:10]}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise TeacherLoadError(f"{source} does not hold a state dict of tensors (found {found}); save "
                               "model.state_dict(), optionally as {'state_dict': ...}")
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def is_hub_spec(weights: object) -> bool:
    """Whether ``weights`` names hub weights (``torchvision:...`` or ``hf-hub:...``) rather than a file."""
    return isinstance(weights, str) and weights.startswith((_TORCHVISION, _HF_HUB))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _torchvision_weights(spec: str) -> tuple[str, str]:
    """(torchvision arch, download URL) of ``torchvision:<arch>.<WEIGHTS>``; TeacherLoadError if unknown."""
    arch, _, tag = spec[len(_TORCHVISION):].partition(".")
    key = f"{arch}.{_TORCHVISION_DEFAULT.get(arch, tag) if tag == 'DEFAULT' else tag}"
    if key not in TORCHVISION_WEIGHTS:
        raise TeacherLoadError(f"unknown torchvision weights {spec!r}: use torchvision:<arch>.<WEIGHTS> with one of "
                               f"{', '.join(TORCHVISION_WEIGHTS)} (or <arch>.DEFAULT), or download the weights file "
                               "and pass its local path as teacher.weights")
    return arch, TORCHVISION_WEIGHTS[key]


def _hf_hub_file(spec: str) -> tuple[str, str]:
    """(repo id, file name) of ``hf-hub:<org>/<repo>[/<file>]``; the file defaults to model.safetensors."""
    parts = spec[len(_HF_HUB):].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise TeacherLoadError(f"bad Hugging Face weights {spec!r}: use hf-hub:<org>/<repo> (its model.safetensors, "
                               "e.g. hf-hub:timm/resnet50.tv_in1k) or hf-hub:<org>/<repo>/<file>")
    return "/".join(parts[:2]), "/".join(parts[2:]) or "model.safetensors"


def _check_hub_spec(spec: str) -> None:
    """Parse a hub spec without downloading anything; TeacherLoadError if malformed or unknown."""
    if spec.startswith(_TORCHVISION):
        _torchvision_weights(spec)
    else:
        _hf_hub_file(spec)


def load_hub_weights(spec: str) -> dict[str, torch.Tensor]:
    """Download (or take from the local cache) hub weights and read them as :func:`load_state_dict_file`
    does (CPU tensors, dtypes as stored, wrappers and prefixes removed).

    Args:
        spec: ``torchvision:<arch>.<WEIGHTS>``, one of :data:`TORCHVISION_WEIGHTS` (e.g.
            ``torchvision:resnet50.IMAGENET1K_V2``; ``<arch>.DEFAULT`` is torchvision's default), fetched
            with ``torch.hub.load_state_dict_from_url`` (hash-checked, cached in
            ``torch.hub.get_dir()/checkpoints``); or ``hf-hub:<org>/<repo>[/<file>]`` (e.g.
            ``hf-hub:timm/resnet50.tv_in1k``), whose ``<file>`` (default ``model.safetensors``) is fetched
            with ``huggingface_hub.hf_hub_download`` (cached in the Hugging Face cache).

    Raises:
        TeacherLoadError: an unknown or malformed spec; the download fails (no internet, a firewall,
            ``HF_HUB_OFFLINE`` set with nothing cached: the message says to download the file on a
            machine with internet and pass its local path as teacher.weights); huggingface_hub is
            missing; or the file does not hold a state dict of tensors.
    """
    if spec.startswith(_TORCHVISION):
        _, url = _torchvision_weights(spec)
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
        return _clean_state(state, spec)
    if spec.startswith(_HF_HUB):
        repo, filename = _hf_hub_file(spec)
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
    raise TeacherLoadError(f"{spec!r} is not a hub spec: use torchvision:<arch>.<WEIGHTS> or hf-hub:<org>/<repo>")


def _preview(items: list[str]) -> str:
    return ", ".join(items[:10]) + (f", ... ({len(items)} in all)" if len(items) > 10 else "")


def build_teacher(arch: str, weights: str | os.PathLike | None, num_classes: int, in_channels: int = 3, *,
                  require_weights: bool = True) -> nn.Module:
    """Build the teacher and load its weights, checking everything before any work starts.

    Checks, in this order: the weights file exists (when ``require_weights`` or ``weights`` is given),
    or the hub spec parses; the model builds; its classifier (:func:`nayer_scale.models.get_classifier`)
    has ``num_classes`` outputs; torchvision weights fit (1000 classes, 3 channels, the matching
    ``tv_*`` zoo model) before anything is downloaded; the hub weights download (see
    :func:`load_hub_weights`); the file's keys match the model's (``*.num_batches_tracked`` may be
    absent) and every tensor has the model's shape; the model has a BatchNorm layer (NAYER's
    BN-statistics loss needs the teacher's running statistics).

    Args:
        arch: zoo name or ``package.module:factory`` (see :func:`resolve_architecture`), or
            ``hf:<hub id or folder>``: a transformers image classifier or a nayer-scale export, weights
            from the folder (:func:`nayer_scale.hf_models.build_hf_teacher`).
        weights: .safetensors / .pth file; or hub weights, ``torchvision:<arch>.<WEIGHTS>`` (e.g.
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
    """
    if arch.startswith("hf:"):  # a transformers model or a nayer-scale export: weights from its folder
        from .hf_models import build_hf_teacher

        return build_hf_teacher(arch, weights, num_classes, in_channels)
    if weights is None and require_weights:
        raise TeacherLoadError("teacher.weights is empty: give the teacher's weights file (.safetensors or .pth) "
                               "or hub weights (torchvision:<arch>.<WEIGHTS>, hf-hub:<org>/<repo>)")
    hub = is_hub_spec(weights)
    if hub:
        _check_hub_spec(weights)
    elif weights is not None and not Path(weights).expanduser().is_file():
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
    if hub and weights.startswith(_TORCHVISION):  # fail before downloading ~100 MB that cannot fit
        tv_arch = _torchvision_weights(weights)[0]
        if arch in list_models() and arch != f"tv_{tv_arch}":
            raise TeacherLoadError(f"{weights} are weights of torchvision's {tv_arch}: set teacher.arch to "
                                   f"tv_{tv_arch}, not {arch}")
        if num_classes != 1000 or in_channels != 3:
            raise TeacherLoadError(f"{weights} are ImageNet weights (1000 classes, 3 input channels) but "
                                   f"num_classes={num_classes} and in_channels={in_channels} were given: pass "
                                   "ImageNet's 1000 class names and teacher.in_channels=3")
    if weights is not None:
        state = load_hub_weights(weights) if hub else load_state_dict_file(weights)
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
