"""Durable file writes and pickle-free state files: the one place the project writes files that matter.

A full disk. Every write here turns ``ENOSPC`` / ``EDQUOT`` into ``DiskFullError``: one line naming
the file, the free space of its file system and what to do, with the partial file removed and the
previous content of the destination intact (``append_line`` truncates what it added).

Atomic writes. ``atomic_path`` / ``atomic_write_bytes`` / ``atomic_write_text`` /
``atomic_write_json`` write to a unique temporary file in the destination's folder, fsync it,
``os.replace`` it over the destination (atomic on POSIX) and fsync the folder, so after a crash or a
power loss the destination holds either the old or the new content, never a mix, and a finished
write survives. Temporary files are named ``<name>.<pid>.<random>.tmp``; one is removed on any error
(a crashed process may leave one behind: readers never open ``*.tmp`` files).

State files. ``save_state`` / ``load_state`` store a training state (optimizer, scheduler, grad
scaler and module state dicts, torch / CUDA / numpy / Python RNG states, plain dicts of numbers) in
two files next to each other::

    <stem>.safetensors   every torch.Tensor and numpy.ndarray, keyed by its path in the structure
                         ("optimizer/state/0/momentum_buffer"); dtype and shape exact
    <stem>.json          {"format": 1, "token": ..., "state": everything else, as tagged JSON}

Why not ``torch.save``: reading a checkpoint with ``torch.load(weights_only=False)`` unpickles it,
and unpickling runs code. A run folder on shared storage that someone can write to would then run
their code on every node at resume. safetensors and JSON are plain data: loading them can never
execute code. Types outside the list in ``save_state`` raise TypeError instead of falling back to
pickle.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DiskFullError",
    "append_line",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "disk_full_named",
    "free_space",
    "fsync_dir",
    "load_state",
    "save_state",
]

STATE_FORMAT = 1
# JSON tags: a JSON object whose only key is one of these is an encoded value, not a plain dict.
_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__dict__")


# --------------------------------------------------------------------------------------------------
# A full disk

_FULL = (errno.ENOSPC, errno.EDQUOT)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def free_space(path: str | os.PathLike) -> tuple[int, int] | None:
    """(free, total) bytes of the file system holding ``path`` (its nearest existing parent); None
    where it cannot be read."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                usage = shutil.disk_usage(folder)
            except OSError:
                return None
            return usage.free, usage.total
    return None


class DiskFullError(OSError):
    """The disk (or the quota) is full while writing ``filename``; the message is one line naming
    the file, the free space of its file system and what to do. Whatever was partially written is
    removed and the previous content of the file is intact."""

    def __init__(self, code: int, path: str | os.PathLike) -> None:
        space = free_space(path)
        where = f"{_size(space[0])} free of {_size(space[1])} on its file system" if space else "free space unknown"
        what = "quota exceeded" if code == errno.EDQUOT else "no space left on device"
        super().__init__(
            code,
            f"{what} while writing {path} ({where}); nothing partial was kept: free some "
            "space (or point run.run_dir elsewhere) and run the same command again, it resumes "
            "from the last complete checkpoint",
            str(path),
        )

    def __str__(self) -> str:
        return self.strerror


@contextlib.contextmanager
def disk_full_named(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise ``ENOSPC`` / ``EDQUOT`` inside the block as ``DiskFullError`` naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as err:
        if err.errno in _FULL:
            raise DiskFullError(err.errno, path) from err
        raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` (and a newline) to the text file ``path``, durably; on any error the file is
    cut back to its previous length, so it never ends in half a line.

    Raises:
        DiskFullError: the disk or the quota is full (the file is as it was).
        OSError: another write error (the file is as it was, where it can be truncated).
    """
    path = Path(path)
    with disk_full_named(path), open(path, "a", encoding="utf-8") as f:
        start = f.tell()
        try:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                f.truncate(start)
            raise


# --------------------------------------------------------------------------------------------------
# Atomic writes


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync the folder ``path`` so that a rename or a new file in it is durable.

    Silently does nothing where folders cannot be opened or fsync'ed (e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a fresh temporary path next to ``path`` to write the new content to.

    On a normal exit the temporary file is fsync'ed and renamed over ``path`` and the folder is
    fsync'ed; on an exception it is removed and ``path`` keeps its previous content. For writers
    that need a file name (``safetensors.torch.save_file``, ``Image.save``) or stream a file::

        with atomic_path(out) as tmp:
            save_file(tensors, str(tmp))

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist.
        DiskFullError: the disk or the quota is full (``ENOSPC`` / ``EDQUOT``, also raised by the
            block): the temporary file is removed and ``path`` is unchanged.
        FileNotFoundError / OSError: the block did not create the temporary file, or writing failed.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    with disk_full_named(path):
        # os.open with O_EXCL rather than mkstemp: mkstemp creates mode 0600 files, this keeps the
        # permissions a plain open() gives (0666 & ~umask), which readers on other accounts may need.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            yield tmp
            fd = os.open(tmp, os.O_RDWR)  # the writer may have replaced the file: fsync what is there now
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace the content of ``path`` by ``data`` atomically and durably (see ``atomic_path``).

    Raises:
        OSError: the folder is missing or not writable, the disk is full, ...; ``path`` is unchanged.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """``atomic_write_text`` of ``json.dumps(obj, indent=indent)`` (no trailing newline).

    Standard ``json`` behaviour: inf and nan are written as ``Infinity`` / ``NaN``.

    Raises:
        TypeError: ``obj`` is not JSON-serialisable (nothing is written then).
    """
    atomic_write_text(path, json.dumps(obj, indent=indent))


# --------------------------------------------------------------------------------------------------
# State files


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor], seen: set[int]) -> Any:
    """JSON-able form of ``value``; tensors and arrays go into ``tensors`` under a key from ``path``."""
    where = path or "<root>"
    if isinstance(value, enum.Enum):  # before int/str: IntEnum / StrEnum members are ints / strs too
        return _encode(value.value, path, tensors, seen)
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()  # numpy scalars: Python bool / int / float
    if isinstance(value, torch.Tensor):
        return {"__tensor__": _add_tensor(value, path, tensors, seen, where)}
    if isinstance(value, np.ndarray):
        try:
            tensor = torch.from_numpy(np.array(value, order="C", copy=True))
        except (TypeError, ValueError) as err:
            raise TypeError(f"cannot store {where}: numpy array of dtype {value.dtype} ({err})") from err
        return {"__ndarray__": _add_tensor(tensor, path, tensors, seen, where)}
    if type(value) in (list, tuple):
        items = [_encode(v, f"{path}/{i}" if path else str(i), tensors, seen) for i, v in enumerate(value)]
        return {"__tuple__": items} if type(value) is tuple else items
    if isinstance(value, dict):  # OrderedDict (module state dicts) and other dicts: a plain dict

        def child(k):
            return f"{path}/{k}" if path else str(k)

        if all(type(k) is str for k in value) and not any(k in _TAGS for k in value):
            return {k: _encode(v, child(k), tensors, seen) for k, v in value.items()}
        return {
            "__dict__": [
                [_encode(k, child(k) + "#key", tensors, seen), _encode(v, child(k), tensors, seen)]
                for k, v in value.items()
            ]
        }
    raise TypeError(
        f"cannot store {where}: type {type(value).__name__}; store its numbers instead (save_state never pickles)"
    )


def _add_tensor(tensor: torch.Tensor, path: str, tensors: dict[str, torch.Tensor], seen: set[int], where: str) -> str:
    if tensor.is_sparse or tensor.layout != torch.strided:
        raise TypeError(f"cannot store {where}: {tensor.layout} tensor; store a dense one")
    cpu = tensor.detach().cpu()
    storage = cpu.untyped_storage().data_ptr()
    if storage in seen or not cpu.is_contiguous():  # safetensors refuses shared or strided tensors
        cpu = cpu.clone(memory_format=torch.contiguous_format)
    elif cpu.numel():
        seen.add(storage)
    key, n = path or "<root>", 1
    while key in tensors:  # e.g. a str key holding "/" that repeats another path
        key, n = f"{path}#{n}", n + 1
    tensors[key] = cpu
    return key


def save_state(path_stem: str | os.PathLike, state: Any) -> None:
    """Store ``state`` as ``<stem>.safetensors`` + ``<stem>.json`` without pickle (module docstring).

    Supported, nested to any depth: dicts (str keys stay JSON objects; other keys, e.g. the int
    parameter ids of an optimizer's ``"state"``, keep their type; OrderedDicts come back as dicts),
    lists, tuples (come back as tuples), None, bool, int, float (inf and nan included), str,
    torch.Tensor (any dense tensor, any device: stored on the CPU with its dtype and shape, 0-dim
    and uint8 RNG states included), numpy.ndarray (numeric dtypes), numpy scalars (stored as Python
    numbers) and Enum members (stored as their ``.value``, e.g. DeepSpeed's ZeroStageEnum -> int).
    That covers ``state_dict()`` of torch optimizers, LR schedulers, GradScaler and modules,
    ``torch.get_rng_state()``, ``torch.Generator.get_state()``, ``np.random.get_state()`` and
    ``random.getstate()``.

    The safetensors file is written first, the JSON last, each atomically; a random token in both
    lets ``load_state`` detect a pair from two different saves (a crash between the two writes).

    Raises:
        TypeError: a value of another type, naming its path, e.g. "cannot store
            optimizer/loss_scaler: type LossScaler; ...". Nothing is written then.
        OSError: the folder is missing or not writable (the previous files stay intact).
    """
    from safetensors.torch import save as safetensors_bytes

    stem = Path(path_stem)
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, "", tensors, set())
    token = uuid.uuid4().hex
    document = json.dumps({"format": STATE_FORMAT, "token": token, "state": encoded})
    atomic_write_bytes(_with_suffix(stem, ".safetensors"), safetensors_bytes(tensors, metadata={"token": token}))
    atomic_write_text(_with_suffix(stem, ".json"), document)


def load_state(path_stem: str | os.PathLike, device: torch.device | str = "cpu") -> Any:
    """Read a state written by ``save_state``; reads only safetensors and JSON (never runs code).

    Args:
        path_stem: the stem given to ``save_state`` (without suffix).
        device: where tensors are placed (numpy arrays always come back as numpy arrays).

    Returns:
        The state, equal to the saved one: same containers (dict, list, tuple), key types, tensor
        dtypes, shapes and values; numpy scalars and Enum members come back as plain values.

    Raises:
        FileNotFoundError: ``<stem>.json`` or ``<stem>.safetensors`` is missing (naming it).
        ValueError: a file is not valid JSON / safetensors, the two files come from different saves,
            an unknown format, or the JSON names a tensor the safetensors file lacks (naming it).
    """
    from safetensors import safe_open

    stem = Path(path_stem)
    json_path, tensor_path = _with_suffix(stem, ".json"), _with_suffix(stem, ".safetensors")
    for p in (json_path, tensor_path):
        if not p.is_file():
            raise FileNotFoundError(f"state file {p} is missing")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{json_path} is not a JSON state file: {err}") from err
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT or "state" not in document:
        raise ValueError(f"{json_path}: not a state file of format {STATE_FORMAT}")
    try:
        with safe_open(str(tensor_path), framework="pt", device="cpu") as f:
            token = (f.metadata() or {}).get("token")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own SafetensorError for a malformed file
        raise ValueError(f"{tensor_path} is not a safetensors file: {err}") from err
    if token != document.get("token"):
        raise ValueError(
            f"{json_path} and {tensor_path} come from different save_state calls "
            "(a save interrupted between the two files?)"
        )
    return _decode(document["state"], tensors, torch.device(device))


def _decode(value: Any, tensors: dict[str, torch.Tensor], device: torch.device) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, device) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        ((tag, body),) = value.items()
        if tag == "__tuple__":
            return tuple(_decode(v, tensors, device) for v in body)
        if tag == "__dict__":
            return {_decode(k, tensors, device): _decode(v, tensors, device) for k, v in body}
        if body not in tensors:
            raise ValueError(f"the state names tensor {body!r}, which its .safetensors file lacks")
        return tensors[body].numpy() if tag == "__ndarray__" else tensors[body].to(device)
    return {k: _decode(v, tensors, device) for k, v in value.items()}


def _with_suffix(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)  # not with_suffix: "process-000.v2" keeps its dot
