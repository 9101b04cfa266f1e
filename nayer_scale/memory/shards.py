"""One memory-bank shard: a WebDataset tar of synthetic images, its encodings and its integrity check.

A shard holds the samples ``{rank:03d}-{index:06d}-{i:06d}`` with the members ``img.<ext>`` (the
image, uint8 (C, H, W)), ``cls`` (the label as text) and ``json`` (metadata). The manifest entry
of a shard records its byte size and SHA-256 (``describe``), so a shard that was truncated,
bit-flipped or deleted after it was listed is detected (``ShardError``) before a single image of it
is used.

Encodings (``memory.encoding``): ``raw`` stores ``img.npy`` (``numpy.save`` of the uint8 array:
fastest to write and read, largest); ``png`` and ``webp`` store the image lossless through Pillow
(1 or 3 channels), smaller on disk and slower to decode; ``webp_lossy`` is the only lossy choice
and must be asked for by that name (with its quality), so no setting silently degrades the bank.
Measured sizes and decode rates: ``benchmarks/memory_bank.py`` and docs/memory-bank.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

__all__ = [
    "ENCODINGS",
    "LOSSLESS",
    "ShardError",
    "as_uint8",
    "check_encoding",
    "decode_image",
    "describe",
    "encode_image",
    "encoding_of",
    "first_image_shape",
    "image_member",
    "read_shard",
    "shard_bytes",
    "verify",
]

#: member extension of each encoding
ENCODINGS = {"raw": "npy", "png": "png", "webp": "webp", "webp_lossy": "webp"}
LOSSLESS = ("raw", "png", "webp")


class ShardError(RuntimeError):
    """A listed shard is missing, has the wrong size or checksum, or does not decode.

    Attributes:
        name: the shard's file name; ``reason``: what was expected and what was found.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"memory-bank shard {name}: {reason}")
        self.name, self.reason = name, reason


def check_encoding(encoding: str, channels: int, quality: int | None = None) -> None:
    """Refuse an encoding that cannot store ``channels``-channel images exactly.

    Raises:
        ValueError: unknown encoding; png/webp with channels not in (1, 3); a ``quality`` given to
            a lossless encoding (lossy storage must be named: ``webp_lossy``); ``webp_lossy``
            without a quality in [1, 100].
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown memory-bank encoding {encoding!r}: use one of {sorted(ENCODINGS)}")
    if encoding != "raw" and channels not in (1, 3):
        raise ValueError(
            f"memory.encoding={encoding} stores 1- or 3-channel images, these have {channels}: use memory.encoding=raw"
        )
    if encoding in LOSSLESS and quality is not None:
        raise ValueError(
            f"memory.encoding={encoding} is lossless and takes no quality; lossy storage must be "
            "asked for by name: memory.encoding=webp_lossy"
        )
    if encoding == "webp_lossy" and not (quality is not None and 1 <= quality <= 100):
        raise ValueError(f"memory.encoding=webp_lossy needs a quality in [1, 100], got {quality!r}")


def image_member(encoding: str) -> str:
    """The tar member suffix of an image, e.g. ``img.npy``."""
    return f"img.{ENCODINGS[encoding]}"


def encode_image(image: np.ndarray, encoding: str, quality: int | None = None) -> bytes:
    """Bytes of one uint8 image (C, H, W) in ``encoding`` (see ``check_encoding``; not re-checked)."""
    if encoding == "raw":
        buf = io.BytesIO()
        np.save(buf, image, allow_pickle=False)
        return buf.getvalue()
    from PIL import Image

    pil = Image.fromarray(image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0)))
    buf = io.BytesIO()
    if encoding == "png":
        pil.save(buf, format="PNG", compress_level=6)
    elif encoding == "webp":
        pil.save(buf, format="WEBP", lossless=True, quality=100, method=4)
    else:
        pil.save(buf, format="WEBP", quality=int(quality), method=4)
    return buf.getvalue()


def decode_image(data: bytes, suffix: str, channels: int) -> np.ndarray:
    """uint8 (C, H, W) from member bytes with suffix ``npy``, ``png`` or ``webp``."""
    if suffix == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as pil:
        array = np.asarray(pil.convert("L" if channels == 1 else "RGB"))
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def shard_bytes(
    images: torch.Tensor,
    labels: torch.Tensor,
    key_prefix: str,
    metadata: dict,
    encoding: str = "raw",
    quality: int | None = None,
) -> bytes:
    """The tar file of one shard, in memory.

    Args:
        images: (N, C, H, W) uint8 on the CPU. labels: (N,) int64.
        key_prefix: ``{rank:03d}-{index:06d}``; sample i is ``{key_prefix}-{i:06d}``.
        metadata: JSON-serialisable dict stored with every sample (plus ``image_shape`` [C, H, W]).
    """
    meta = json.dumps({**metadata, "image_shape": list(images.shape[1:])}).encode()  # for rebuilding a manifest
    member = image_member(encoding)
    buf = io.BytesIO()
    with wds.TarWriter(buf) as sink:
        for i in range(len(labels)):
            sink.write(
                {
                    "__key__": f"{key_prefix}-{i:06d}",
                    member: encode_image(images[i].numpy(), encoding, quality),
                    "cls": str(int(labels[i])).encode(),
                    "json": meta,
                }
            )
    return buf.getvalue()


def describe(data: bytes) -> dict:
    """``{"bytes": size, "sha256": hex digest}`` of a shard's file content."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def verify(path: Path, entry: dict) -> bytes:
    """The content of the shard at ``path`` after checking it against its manifest ``entry``.

    Entries written before checksums existed (manifest format 1) are checked for existence only.

    Raises:
        ShardError: the file is missing, or its size or SHA-256 differs from the entry's (both named).
    """
    name = entry["name"]
    if not path.is_file():
        raise ShardError(name, f"the file is missing (expected {entry.get('bytes', '?')} bytes at {path})")
    data = path.read_bytes()
    if "bytes" in entry and len(data) != entry["bytes"]:
        raise ShardError(
            name, f"{len(data)} bytes on disk, the manifest lists {entry['bytes']} (truncated or overwritten)"
        )
    if "sha256" in entry:
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise ShardError(
                name,
                f"SHA-256 {digest[:16]}... differs from the manifest's {entry['sha256'][:16]}... "
                "(the file was modified or bit-flipped)",
            )
    return data


def encoding_of(suffix: str) -> str:
    """The encoding of an image member suffix (``npy`` -> raw, ``png``, ``webp``)."""
    return {"npy": "raw", "png": "png", "webp": "webp"}[suffix]


def first_image_shape(data: bytes, where: list[tuple[int, int, str]], name: str) -> list[int]:
    """[C, H, W] of the first image of a shard (``where`` from ``read_shard``), for rebuilding a
    manifest: from the npy header, or from the PNG/WebP mode (grey: 1 channel, else 3).

    Raises:
        ShardError: the image does not decode.
    """
    offset, size, suffix = where[0]
    try:
        if suffix == "npy":
            return list(np.load(io.BytesIO(data[offset : offset + size]), allow_pickle=False).shape)
        from PIL import Image

        with Image.open(io.BytesIO(data[offset : offset + size])) as pil:
            return [1 if pil.mode in ("L", "1", "I;16") else 3, pil.height, pil.width]
    except Exception as err:
        raise ShardError(name, f"first image does not decode ({err})") from err


def read_shard(
    data: bytes, name: str, channels: int | None = None, *, images: bool = True
) -> tuple[np.ndarray | None, np.ndarray, list[tuple[int, int, str]], dict | None]:
    """Decode a shard's content.

    Args:
        data: the tar file's bytes; name: the shard name (for messages).
        channels: C of the images (needed to decode png/webp; read from the array for raw).
        images: False reads labels and image locations only (``memory.cache=none``).

    Returns:
        images (N, C, H, W) uint8 (None if ``images`` is False), labels (N,) int64, the
        (byte offset, size, suffix) of every image member inside the file, and the metadata of the
        first sample (None for an empty shard).

    Raises:
        ShardError: not a tar file, a sample without image or label, or an image that does not decode.
    """
    decoded, labels, where, meta = [], [], [], None
    current: dict = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for m in tar:
                key, _, suffix = m.name.partition(".")
                if current and current["key"] != key:
                    _finish(current, decoded, labels, where, name, channels, images)
                    current = {}
                current["key"] = key
                content = tar.extractfile(m).read() if (images or not suffix.startswith("img.")) else None
                current[suffix] = (content, m.offset_data, m.size)
                if suffix == "json" and meta is None:
                    meta = json.loads(content)
            if current:
                _finish(current, decoded, labels, where, name, channels, images)
    except (tarfile.TarError, OSError, ValueError, json.JSONDecodeError) as err:
        raise ShardError(name, f"does not decode ({type(err).__name__}: {err})") from err
    stacked = np.stack(decoded) if images and decoded else None
    return stacked, np.asarray(labels, dtype=np.int64), where, meta


def _finish(
    sample: dict, decoded: list, labels: list, where: list, name: str, channels: int | None, images: bool
) -> None:
    """Append one complete sample (its members gathered in ``sample``) to the outputs."""
    img = [s for s in sample if s.startswith("img.")]
    if not img or "cls" not in sample:
        raise ShardError(name, f"sample {sample['key']} lacks its image or label member")
    content, offset, size = sample[img[0]]
    suffix = img[0].split(".", 1)[1]
    if images:
        try:
            array = decode_image(content, suffix, channels or 0)
        except Exception as err:  # Pillow raises several types for broken images
            raise ShardError(name, f"image of sample {sample['key']} does not decode ({err})") from err
        decoded.append(array)
    labels.append(int(sample["cls"][0]))
    where.append((offset, size, suffix))


def as_uint8(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``images`` checked against ``labels`` and as uint8 (floats in [0, 1] rounded to 0..255).

    Raises:
        ValueError: wrong shapes or dtypes, N == 0, N differing between images and labels, float
            values outside [0, 1] (or NaN).
    """
    if images.dim() != 4 or labels.dim() != 1 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(
            f"expected images (N, C, H, W) and labels (N,) with N > 0, got "
            f"{tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if images.is_floating_point():
        lo, hi = images.min().item(), images.max().item()
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(f"float images must lie in [0, 1], got min {lo} max {hi}")
        return (images.float() * 255).round().clamp(0, 255).to(torch.uint8)
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be float in [0, 1] or uint8, got {images.dtype}")
    return images
