"""One decoded copy of the memory bank per node (``memory.cache=node``).

Every shard is decoded once per node into a file of raw uint8 images in shared memory
(``/dev/shm/nayer-scale-<key>/<shard>.<sha>.u8``, ``key`` derived from the bank's absolute path)
and every process of the node maps that file (``torch.from_file(shared=True)``): the pages live
once in the node's page cache, whatever the number of processes. The first process that needs a
shard decodes it and publishes the file with an atomic rename; a process that finds the file
maps it. File names carry the shard's checksum, so a file left by an earlier run of the same
folder is reused only for the very same shard. Retired shards' files are unlinked (mappings held
by other processes stay valid). ``NodeFiles.remove_all`` (end of a run, by one process per node)
deletes the folder; after a crash it is left for the resume, which reuses it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..storage import atomic_write_bytes

__all__ = ["NodeFiles", "default_shm_dir"]


def default_shm_dir() -> Path:
    """``$NAYER_SHM_DIR`` or ``/dev/shm`` (tmpfs on Linux), else the temp folder."""
    env = os.environ.get("NAYER_SHM_DIR")
    if env:
        return Path(env)
    return Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))


class NodeFiles:
    """Shared-memory files of decoded shards, one per shard per node (the store behind
    ``nayer_scale.memory.caches.NodeCache``).

    Args:
        bank_root: the memory bank's folder (only its absolute path is used, as the key).
        shm_dir: where the files go (default ``default_shm_dir()``).
    """

    def __init__(self, bank_root: str | os.PathLike, shm_dir: str | os.PathLike | None = None) -> None:
        key = hashlib.sha256(str(Path(bank_root).resolve()).encode()).hexdigest()[:16]
        self.dir = Path(shm_dir or default_shm_dir()) / f"nayer-scale-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, entry: dict) -> Path:
        tag = entry.get("sha256", "nosum")[:16]
        return self.dir / f"{Path(entry['name']).stem}.{tag}.u8"

    def has(self, entry: dict) -> bool:
        """Whether a process of this node has published the shard's file (complete: its size is
        that of the shard's uint8 images)."""
        path = self._path(entry)
        return path.is_file() and path.stat().st_size == int(np.prod([entry["num_samples"], *entry["shape"]]))

    def get(self, entry: dict, decode) -> torch.Tensor:
        """The shard's images (N, C, H, W) uint8, a shared mapping of the node's copy.

        Args:
            entry: the shard's manifest entry (name, num_samples, shape, sha256).
            decode: callable returning the images as a (N, C, H, W) uint8 numpy array, called only
                when no process of this node has published the file yet.
        """
        path = self._path(entry)
        shape = (entry["num_samples"], *entry["shape"])
        nbytes = int(np.prod(shape))
        if not path.is_file() or path.stat().st_size != nbytes:
            array = np.ascontiguousarray(decode(), dtype=np.uint8)
            if array.shape != shape:
                raise ValueError(f"{entry['name']} decodes to {array.shape}, its manifest lists {shape}")
            atomic_write_bytes(path, array.tobytes())  # temp file + rename: readers never map a partial file
        return torch.from_file(str(path), shared=True, size=nbytes, dtype=torch.uint8).view(shape)

    def drop(self, entry: dict) -> None:
        """Unlink a retired shard's file (mappings already made stay valid)."""
        self._path(entry).unlink(missing_ok=True)

    def nbytes(self) -> int:
        """Bytes of all files in this node's cache folder."""
        return sum(p.stat().st_size for p in self.dir.glob("*.u8"))

    def remove_all(self) -> None:
        """Delete the node's cache folder (call from one process per node, after the others are done)."""
        shutil.rmtree(self.dir, ignore_errors=True)
