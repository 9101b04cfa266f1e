"""What a weights file is, when it is not a state dict that loads: told from its first bytes, so
that an error says what the file is and is not (an HTML error page saved as ``.pth``, a truncated
download, random bytes) instead of quoting the loader's exception.

Formats recognised: safetensors (an 8-byte little-endian header length, a JSON header listing each
tensor's byte range), ``torch.save`` since PyTorch 1.6 (a zip archive), the legacy ``torch.save``
format and other pickles (``0x80`` + protocol byte), HTML and other text.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

__all__ = ["describe_weights_file"]

_PICKLE_PROTOCOLS = range(2, 6)


def _safetensors(head: bytes, size: int) -> str | None:
    """A description of a damaged safetensors file, or None when its header and size are sound."""
    if len(head) < 8:
        return f"is not a safetensors file: it holds only {size} bytes, fewer than a safetensors header"
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > size - 8:
        return (
            f"is a truncated safetensors file: its header says {header_len} bytes of header, the whole file "
            f"holds {size} bytes (an interrupted download or copy?)"
        )
    return None


def _safetensors_data(path: Path, size: int) -> str | None:
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            return "is not a safetensors file: the header after its first 8 bytes is not JSON"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and "data_offsets" in v]
    needed = 8 + header_len + max(ends, default=0)
    if needed > size:
        return (
            f"is a truncated safetensors file: its header lists {needed} bytes, the file holds {size} "
            "(an interrupted download or copy?)"
        )
    return None


def _text_kind(head: bytes, size: int) -> str | None:
    if b"\x00" in head:  # binary (a safetensors header length, a tensor); text has no NUL bytes
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lowered = text.lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered[:512]:
        return (
            f"is an HTML page ({size} bytes), not a weights file: the download saved a web page (an error, "
            "login or redirect page) instead of the file; download the weights file itself"
        )
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"is a text file ({size} bytes, starting {first!r}), not a weights file"


def describe_weights_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it cannot be a loadable state dict, as a clause for an error message
    ("is an HTML page (1534 bytes), not a weights file: ..."); None when its format looks sound (a
    zip archive, a pickle or a safetensors file whose sizes add up), so that a load failure has
    another cause (e.g. pickled objects other than tensors).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): the download or copy did not finish"
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except zipfile.BadZipFile:
            return (
                "is a damaged or truncated torch.save archive (a zip file without its directory: an interrupted "
                "download or copy?)"
            )
        return None
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return None
    text = _text_kind(head, size)
    if text is not None:
        return text
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8 bytes of header length, then JSON
        return _safetensors(head, size) or _safetensors_data(path, size)
    if path.suffix == ".safetensors":
        return _safetensors(head, size) or "is not a safetensors file: no JSON header after its first 8 bytes"
    return (
        f"is not a weights file: its first bytes ({head[:8].hex(' ')}) match no known format (safetensors, "
        "a torch.save zip archive or pickle)"
    )
