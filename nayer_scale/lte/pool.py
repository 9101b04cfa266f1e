"""The label-text embedding (LTE) pool: prompts -> frozen (K, D) matrix, cached on disk.

NAYER (Tran et al., CVPR 2024, Sec. 3) replaces the random noise input of the generator by the
label-text embedding of the target class (plus a small learnable noisy layer). The embeddings are
computed ONCE, by a pretrained text encoder (CLIP, Radford et al., 2021, or a Sentence-BERT model,
Reimers & Gurevych, 2019), from one prompt per class, and stay fixed during training.

Computing them needs the encoder (hundreds of MB, perhaps a download); using them does not. So the
pool is cached as a small safetensors file whose name is a hash of (encoder spec, template, class
names) and whose metadata repeats them; a matching cached file is loaded without ever building the
encoder, which lets a run resume, or start on a machine that has only the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ..storage import atomic_write_bytes
from .encoders import build_text_encoder

__all__ = ["PROMPT_TEMPLATES", "build_prompts", "lte_cache_key", "load_or_build_lte", "load_lte_file"]

#: Named prompt templates. ``{name}`` is the class name, ``{index}`` the label index.
PROMPT_TEMPLATES: dict[str, str] = {
    "class_of": "a class of a {name}",
    "photo_of": "a photo of a {name}",
    "photo_index": "a photo of a {index}",
}

_FIELDS = {"name", "index"}
_TENSOR_KEY = "lte"


def _resolve_template(template: str) -> str:
    """Template key or literal format string -> format string; ValueError when unusable."""
    fmt = PROMPT_TEMPLATES.get(template, template)
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(fmt) if f is not None}
    except ValueError as e:  # unbalanced braces
        fields = {f"<{e}>"}
    if not fields or not fields <= _FIELDS:
        raise ValueError(
            f"prompt template {template!r} is neither a key of PROMPT_TEMPLATES "
            f"({', '.join(PROMPT_TEMPLATES)}) nor a format string using only {{name}} and/or {{index}}"
        )
    return fmt


def build_prompts(class_names: list[str], template: str) -> list[str]:
    """One prompt per class: ``template`` filled with the class name and/or label index.

    Args:
        class_names: ``K`` class names in label order.
        template: a key of :data:`PROMPT_TEMPLATES` (``"class_of"``, ``"photo_of"``, ``"photo_index"``)
            or a literal format string with ``{name}`` and/or ``{index}`` fields only,
            e.g. ``"an image of the {name}"``.

    Returns:
        ``K`` prompts; entry ``k`` is ``template.format(name=class_names[k], index=k)``
        (NAYER, Tran et al., CVPR 2024, Sec. 3).

    Raises:
        ValueError: the template is unknown, has no field, or has a field other than name/index.
    """
    fmt = _resolve_template(template)
    return [fmt.format(name=name, index=k) for k, name in enumerate(class_names)]


def _canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def lte_cache_key(encoder_name: str, template: str, class_names: list[str]) -> str:
    """Cache key of an LTE pool: the first 16 hex chars of the SHA-256 of a canonical JSON of
    ``{"encoder", "template", "class_names"}``. Any change of encoder spec, template or class list
    (names or order) gives a new key."""
    payload = _canonical_json({"encoder": encoder_name, "template": template, "class_names": list(class_names)})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def load_lte_file(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, str]]:
    """Read a cached LTE pool.

    Returns:
        ``(lte, metadata)``: the ``(K, D)`` float32 CPU tensor and the safetensors metadata
        (``encoder``, ``template``, ``class_names`` and ``prompts`` as JSON lists, ``dim``, ``created_by``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file holds no 2-D ``"lte"`` tensor (not an LTE pool file).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LTE pool file {str(path)!r} does not exist")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = dict(f.metadata() or {})
        if _TENSOR_KEY not in f.keys():
            raise ValueError(f"{path} is not an LTE pool file: no {_TENSOR_KEY!r} tensor")
        lte = f.get_tensor(_TENSOR_KEY)
    if lte.dim() != 2:
        raise ValueError(f"{path}: the {_TENSOR_KEY!r} tensor has shape {tuple(lte.shape)}, expected (K, D)")
    return lte.to(torch.float32), metadata


def _save_atomic(path: Path, lte: torch.Tensor, metadata: dict[str, str]) -> None:
    """Write the pool file atomically and durably (``nayer_scale.storage.atomic_write_bytes``)."""
    from safetensors.torch import save

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save({_TENSOR_KEY: lte.contiguous()}, metadata=metadata))


def load_or_build_lte(
    class_names: list[str],
    encoder: str,
    template: str = "photo_of",
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """The label-text embedding pool of NAYER (Tran et al., CVPR 2024, Sec. 3).

    Args:
        class_names: ``K`` class names in label order (see :func:`get_class_names`).
        encoder: text encoder spec for :func:`build_text_encoder` (``"minilm"``, ``"minilm:/path"``,
            ``"clip:<id or folder>"``). The spec string itself is part of the cache key, so a cached
            pool is found without building the encoder.
        template: prompt template, a key of :data:`PROMPT_TEMPLATES` or a format string (see
            :func:`build_prompts`).
        cache_dir: folder of cached pools (created if missing); ``None`` disables caching.
        log: called with a one-line message before the encoder is loaded (seconds to minutes on the
            first run), e.g. ``print``; nothing is said when the cache answers.

    Returns:
        ``(K, D)`` float32 CPU tensor, row ``k`` the L2-normalised embedding of class ``k``'s prompt.

    If ``cache_dir/lte-{key}.safetensors`` exists and its metadata matches (encoder, template,
    class names), it is loaded and the encoder is never built. Otherwise the encoder is built,
    the prompts embedded, and the pool saved atomically (``nayer_scale.storage.atomic_write_bytes``) with
    metadata ``encoder``, ``template``, ``class_names`` (JSON), ``prompts`` (JSON), ``dim``,
    ``created_by="nayer-scale"``. An unreadable or mismatching cached file is rebuilt, with a warning.

    Raises:
        ValueError: empty class list, bad template or bad encoder spec.
        ImportError: the encoder's optional dependency is missing (only when building).
    """
    class_names = [str(n) for n in class_names]
    if not class_names:
        raise ValueError("class_names is empty: the LTE pool needs at least one class")
    prompts = build_prompts(class_names, template)  # validates the template before any work
    names_json = _canonical_json(class_names)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir).expanduser() / f"lte-{lte_cache_key(encoder, template, class_names)}.safetensors"
        cached = _cached_pool(path, encoder, template, names_json, len(class_names))
        if cached is not None:
            return cached
    return _build_pool(path, encoder, template, prompts, names_json, len(class_names), log)


def _build_pool(
    path: Path | None,
    encoder: str,
    template: str,
    prompts: list[str],
    names_json: str,
    k: int,
    log: Callable[[str], None] | None,
) -> torch.Tensor:
    """Build the encoder, embed the prompts into a ``(k, D)`` float32 CPU pool, save it at ``path`` if set."""
    if log is not None:
        log(
            f"label-text embeddings: loading text encoder {encoder!r} and encoding {len(prompts)} prompts "
            f"(once; cached{' in ' + str(path.parent) if path is not None else ': no, cache_dir is None'})"
        )
    lte = build_text_encoder(encoder).encode(prompts).detach().to("cpu", torch.float32).contiguous()
    if lte.dim() != 2 or lte.shape[0] != k:
        raise RuntimeError(f"text encoder {encoder!r} returned shape {tuple(lte.shape)}, expected ({k}, D)")
    if path is not None:
        _save_atomic(
            path,
            lte,
            {
                "encoder": encoder,
                "template": template,
                "class_names": names_json,
                "prompts": _canonical_json(prompts),
                "dim": str(lte.shape[1]),
                "created_by": "nayer-scale",
            },
        )
    return lte


def _cached_pool(path: Path, encoder: str, template: str, names_json: str, k: int) -> torch.Tensor | None:
    """The cached pool at ``path`` when it exists and its metadata match the request; None (with a
    warning for a damaged or mismatching file, which is then rebuilt) otherwise."""
    if not path.is_file():
        return None
    try:
        lte, meta = load_lte_file(path)
        ok = (
            meta.get("encoder") == encoder
            and meta.get("template") == template
            and meta.get("class_names") == names_json
            and lte.shape[0] == k
        )
    except Exception as e:  # a damaged file is rebuilt
        ok, meta = False, {"error": repr(e)}
    if ok:
        return lte
    warnings.warn(
        f"cached LTE pool {path} does not match the request ({meta.get('error', 'metadata differ')}); rebuilding it",
        RuntimeWarning,
        stacklevel=3,
    )
    return None
