"""Reading and writing model files: state dicts (safetensors or .pth), their safetensors metadata, and
the nayer-scale model folder (``model.safetensors`` + ``config.json`` + ``README.md``) that
``teacher.arch=hf:<folder>`` loads back (:mod:`nayer_scale.models.hf`).

Everything read comes back as CPU tensors with the dtypes as stored; checkpoint wrappers
(``{"state_dict": ...}``, ``{"model": ...}``, ...) and ``module.`` (DDP / DataParallel) or
``_orig_mod.`` (torch.compile) key prefixes are removed, so a file of any trainer loads into a zoo model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..storage import atomic_path, atomic_write_json, atomic_write_text
from .weights_file import describe_weights_file

__all__ = [
    "FOLDER_FORMAT",
    "NAYER_LIBRARY",
    "TeacherLoadError",
    "clean_state_dict",
    "load_state_dict_file",
    "read_metadata",
    "save_model",
    "save_model_folder",
]

#: ``library_name`` and ``format`` of the ``config.json`` of a nayer-scale model folder.
NAYER_LIBRARY = "nayer-scale"
FOLDER_FORMAT = 1

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "teacher")
_PREFIXES = ("module.", "_orig_mod.")


class TeacherLoadError(ValueError):
    """The teacher (or a model file) cannot be used as given; the message says what to change."""


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
    except Exception as err:  # what the file is, in our words: the loaders' own texts run to pages
        what = describe_weights_file(path)
        if what is None:
            what = (
                f"holds pickled Python objects other than tensors, which torch.load(weights_only=True) "
                f"refuses to run ({type(err).__name__}); save the model's state_dict() with torch.save or "
                "safetensors, not the pickled model object"
            )
        else:
            what += "; give the teacher's state_dict() saved with torch.save or safetensors"
        raise TeacherLoadError(f"cannot read weights file {path}: it {what}") from None
    return clean_state_dict(state, path)


def clean_state_dict(state: object, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Unwrap checkpoint wrappers and strip the ``module.`` / ``_orig_mod.`` prefixes that all keys
    of a loaded object share (as :func:`load_state_dict_file` does).

    Args:
        state: what ``torch.load`` (or a hub download) returned.
        source: the file or hub spec it came from, for the message.

    Returns:
        the state dict: parameter / buffer name -> tensor, as stored.

    Raises:
        TeacherLoadError: naming ``source``, unless ``state`` holds a non-empty dict of tensors.
    """
    state = _unwrap(state)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = f"a dict with keys {list(state)[:10]}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise TeacherLoadError(
            f"{source} does not hold a state dict of tensors (found {found}); save "
            "model.state_dict(), optionally as {'state_dict': ...}"
        )
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def save_model(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save ``model.state_dict()`` (each tensor detached, copied to the CPU, contiguous) as safetensors,
    atomically (``nayer_scale.storage.atomic_path``): a kill or a full disk leaves the previous file.

    Args:
        model: any module; tied (shared) tensors are stored as separate copies.
        path: destination, conventionally ``*.safetensors``.
        metadata: string-to-string header entries (e.g. a JSON-encoded config), read back by
            :func:`read_metadata`.

    Raises:
        TypeError: a metadata key or value is not a string.
        DiskFullError: the disk or quota is full (the previous file is intact).
    """
    metadata = dict(metadata or {})
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; json.dumps the values of {bad}")
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:  # a kill or a full disk mid-write leaves the previous file, never half of one
        save_file(state, str(tmp), metadata=metadata)


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


def save_model_folder(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    architecture: str,
    class_names: list[str],
    in_channels: int,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    card: str,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` (a zoo model) as a nayer-scale model folder that ``teacher.arch=hf:<folder>``
    and :func:`nayer_scale.models.hf.load_model_folder` load back: ``model.safetensors`` (state dict),
    ``config.json`` (``library_name``, ``architecture``, ``num_classes``, ``class_names``, ``id2label``,
    ``in_channels``, ``image_size``, ``mean``, ``std`` of [0, 1] pixels, plus ``extra``) and ``README.md``
    (``card``). Files are written atomically (``nayer_scale.storage``).

    Returns:
        the folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, out / "model.safetensors", {"format": "pt"})
    config = {
        "library_name": NAYER_LIBRARY,
        "format": FOLDER_FORMAT,
        "architecture": architecture,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "id2label": {str(i): n for i, n in enumerate(class_names)},
        "in_channels": int(in_channels),
        "image_size": int(image_size),
        "mean": list(mean),
        "std": list(std),
        **(extra or {}),
    }
    atomic_write_json(out / "config.json", config)
    atomic_write_text(out / "README.md", card)
    return out
