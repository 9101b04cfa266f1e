"""Sharded, crash-safe, optionally bounded memory bank of synthetic images.

In NAYER the best synthetic batch of every synthesis round goes into a memory and the student
trains on uniform random samples from all of it. The published code kept one PNG per image in a
folder and re-scanned (and re-decoded) that folder for every student batch. Here the memory is a
folder ``root`` of WebDataset tar shards (``nayer_scale.memory.shards``) plus one JSON manifest per
process; each shard is decoded once into a cache, and student batches are gathered ahead of the
student step (``nayer_scale.memory.sampler``).

Layout and atomicity protocol (``root`` is shared by all processes; rank ``r`` writes only its own
files)::

    shard-r{r:03d}-{index:06d}.tar   one per admitted write(); see nayer_scale.memory.shards
    manifest-r{r:03d}.json           {"format": 2, "rank": r, "next_index": n,
                                      "shards": [entry, ...],    live, oldest first
                                      "retired": [entry, ...]}   out of the bank, file kept while a
                                                                 kept checkpoint lists it

An entry is ``{"name", "rank", "index", "num_samples", "epoch", "shape", "metadata", "bytes",
"sha256", "encoding"[, "slot"]}``.

1. A shard is written to a temporary file, fsync'ed and renamed into place
   (``nayer_scale.storage.atomic_path``); only then is the manifest rewritten the same way with the
   new entry appended and, for a bounded memory (``max_images``), the retired entries moved from
   ``shards`` to ``retired`` in the same atomic rewrite (``nayer_scale.memory.retention``).
2. A retired shard's file is deleted by ``release`` only when no kept checkpoint lists it, so every
   kept checkpoint can be resumed exactly.

Readers only open shards listed in a manifest and check each against its size and SHA-256: a crash
leaves at most a ``.tmp`` file or an unlisted shard of the crashed rank (deleted when that rank
starts again); a shard damaged later (truncated, bit-flipped, deleted) is named in a warning and an
event (``pop_events``, logged to ``metrics.jsonl``), dropped from the bank, and the run goes on; a
damaged manifest of this rank is rebuilt from its shards that verify.

Where decoded images live (``cache``): "device" (one buffer on the training device, falling back
to CPU if it stops fitting), "cpu" (host RAM, per process), "node" (one copy per node in shared
memory, ``nayer_scale.memory.node_cache``), "none" (labels and byte offsets only; images read from
the shard files for every batch). All four give the same batches for the same draws.

Order rule (what makes resume exact): logically the bank is ordered by ``(rank, index)`` of its
live shards, then by position inside the shard, whatever order the shards were loaded in; a draw
picks logical indices.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..storage import atomic_path, atomic_write_json
from . import retention, shards
from .node_cache import NodeCache
from .sampler import Prefetcher, draw_indices, host_empty
from .shards import ShardError

FORMAT = 2
CACHES = ("device", "cpu", "node", "none")
SHARD_PATTERN = re.compile(r"shard-r\d{3}-\d{6}\.tar")

__all__ = ["CACHES", "FORMAT", "MemoryBank", "SHARD_PATTERN"]


class MemoryBank:
    """Memory of synthetic images shared by all processes through sharded tar files.

    Args:
        root: folder of shards and manifests (created if missing).
        rank, world_size: this process and the number of processes; rank ``r`` writes only
            ``shard-r{r:03d}-*.tar`` and ``manifest-r{r:03d}.json``.
        device: where ``sample``/``batches`` return batches.
        cache_on_device: shorthand for ``cache="device"`` (True) / ``"cpu"`` (False).
        cache: "device", "cpu", "node" or "none" (module docstring); overrides ``cache_on_device``.
        read_threads: threads reading images from shard files (``cache="none"``).
        progress: show a progress bar while loading many shards at once (resume, refresh).
        max_images: images the whole bank keeps (0 = all); each process keeps at most
            ``max_images // world_size`` of its own (``nayer_scale.memory.retention``).
        retirement: "fifo" or "reservoir" (used when ``max_images`` > 0).
        encoding: "raw", "png", "webp" (lossless) or "webp_lossy" (with ``quality``).
        seed: run seed (reservoir draws).
        shm_dir: folder of the node cache (default ``/dev/shm``).

    Raises:
        ValueError: rank outside [0, world_size), an unknown cache, retirement or encoding, or a
            quality given to a lossless encoding.
    """

    def __init__(self, root: str | os.PathLike, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu", cache_on_device: bool = True, cache: str | None = None,
                 read_threads: int = 8, progress: bool = False, max_images: int = 0, retirement: str = "fifo",
                 encoding: str = "raw", quality: int | None = None, seed: int = 0,
                 shm_dir: str | os.PathLike | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        cache = cache or ("device" if cache_on_device else "cpu")
        if cache not in CACHES:
            raise ValueError(f"cache must be one of {CACHES}, got {cache!r}")
        if retirement not in retention.RETIREMENTS:
            raise ValueError(f"unknown memory.retirement {retirement!r}: use fifo or reservoir")
        if encoding not in shards.ENCODINGS:
            raise ValueError(f"unknown memory-bank encoding {encoding!r}: use one of {sorted(shards.ENCODINGS)}")
        if encoding in shards.LOSSLESS and quality is not None:
            shards.check_encoding(encoding, 1, quality)  # raises: lossy storage must be named
        self.cache, self.progress, self.seed = cache, progress, seed
        self.encoding, self.quality = encoding, quality
        self.cap = max_images // world_size if max_images > 0 else 0
        self.retirement = retirement
        self.root = Path(root)
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.root.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(read_threads) if cache == "none" else None
        self._node = NodeCache(self.root, shm_dir) if cache == "node" else None
        self._events: list[dict] = []
        self._bad: set[str] = set()  # damaged shards already reported (not retried)
        own = self._read_own_manifest()
        self._own, self._retired, self._next_index = own["shards"], own["retired"], own["next_index"]
        self._clean_own_files({e["name"] for e in self._own + self._retired})
        self._reset_cache()

    # ------------------------------------------------------------------------------------------
    # Manifests and files

    def _shard_name(self, rank: int, index: int) -> str:
        return f"shard-r{rank:03d}-{index:06d}.tar"

    def _manifest_path(self, rank: int) -> Path:
        return self.root / f"manifest-r{rank:03d}.json"

    def _read_manifest(self, rank: int) -> dict:
        """``rank``'s manifest as {"shards", "retired", "next_index"} (format 1 upgraded in memory).

        Raises:
            ValueError: the file is not valid JSON or lacks the manifest's fields (damaged).
            RuntimeError: an unsupported format number.
        """
        path = self._manifest_path(rank)
        if not path.is_file():
            return {"shards": [], "retired": [], "next_index": 0}
        data = json.loads(path.read_text())  # json.JSONDecodeError is a ValueError
        if not isinstance(data, dict) or "shards" not in data:
            raise ValueError(f"{path} is not a memory-bank manifest")
        if data.get("format") not in (1, FORMAT):
            raise RuntimeError(f"{path}: unsupported memory-bank manifest format {data.get('format')!r}")
        live, retired = data["shards"], data.get("retired", [])
        next_index = data.get("next_index", max((e["index"] for e in live + retired), default=-1) + 1)
        return {"shards": live, "retired": retired, "next_index": next_index}

    def _read_own_manifest(self) -> dict:
        """This rank's manifest; a damaged one is rebuilt from this rank's shards that decode."""
        try:
            return self._read_manifest(self.rank)
        except ValueError as err:
            return self._rebuild_manifest(str(err))

    def _rebuild_manifest(self, why: str) -> dict:
        """Rebuild this rank's manifest from its shard files that decode completely (newest kept
        up to the cap), write it, and report it."""
        entries = []
        for path in sorted(self.root.glob(f"shard-r{self.rank:03d}-*.tar")):
            data = path.read_bytes()
            try:
                _, labels, where, meta = shards.read_shard(data, path.name, images=False)
                if not where:
                    continue
                meta = dict(meta or {})
                shape = meta.pop("image_shape", None) or shards.first_image_shape(data, where, path.name)
                shards.read_shard(data, path.name, shape[0])  # every image decodes
            except ShardError:
                continue
            entries.append({"name": path.name, "rank": self.rank, "index": int(path.stem.split("-")[-1]),
                            "num_samples": len(labels), "epoch": meta.get("epoch"), "shape": shape,
                            "metadata": meta, "encoding": shards.encoding_of(where[0][2]), **shards.describe(data)})
        live, total = [], 0
        for e in reversed(entries):  # the newest that fit, as FIFO would have kept
            if self.cap and total + e["num_samples"] > self.cap:
                break
            live.insert(0, e)
            total += e["num_samples"]
        self._own, self._retired = live, []
        self._next_index = max((e["index"] for e in entries), default=-1) + 1
        self._report("manifest_rebuilt", self._manifest_path(self.rank).name,
                     f"{why}; rebuilt from the {len(live)} shards of rank {self.rank} that decode")
        self._write_manifest()
        return {"shards": self._own, "retired": [], "next_index": self._next_index}

    def _write_manifest(self) -> None:
        atomic_write_json(self._manifest_path(self.rank),
                          {"format": FORMAT, "rank": self.rank, "next_index": self._next_index,
                           "shards": self._own, "retired": self._retired}, indent=1)

    def _clean_own_files(self, keep: set[str]) -> None:
        """Delete this rank's ``.tmp`` files and shards listed neither as live nor as retired."""
        prefix = f"shard-r{self.rank:03d}-"
        manifest = self._manifest_path(self.rank).name + "."
        for path in self.root.iterdir():
            name = path.name
            stale_tmp = name.endswith(".tmp") and (name.startswith(prefix) or name.startswith(manifest))
            unlisted = name.startswith(prefix) and name.endswith(".tar") and name not in keep
            if stale_tmp or unlisted:
                path.unlink(missing_ok=True)

    def _report(self, event: str, name: str, reason: str) -> None:
        """Warn and keep an event for ``pop_events`` (the trainer logs them to metrics.jsonl)."""
        warnings.warn(f"memory bank: {name}: {reason}", RuntimeWarning, stacklevel=3)
        self._events.append({"event": event, "file": name, "reason": reason, "rank": self.rank})

    def pop_events(self) -> list[dict]:
        """Damaged shards dropped and manifests rebuilt since the last call (then forgotten)."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------------------------------
    # Cache

    def _reset_cache(self) -> None:
        self._storage = self.device if self.cache == "device" else torch.device("cpu")
        self._entries: dict[tuple[int, int], dict] = {}  # live shards in the cache, by (rank, index)
        self._labels_of: dict[tuple[int, int], torch.Tensor] = {}  # (N,) int64 CPU
        self._mapped: dict[tuple[int, int], torch.Tensor] = {}  # "cpu"/"node": (N, C, H, W) uint8
        self._locations: dict[tuple[int, int], list[tuple[str, int, int, str]]] = {}  # "none"
        self._rows: dict[tuple[int, int], int] = {}  # "device": first row in the buffer
        self._buffer: torch.Tensor | None = None  # "device": (capacity, C, H, W) uint8
        self._free: list[tuple[int, int]] = []  # "device": (row, n) of retired shards' rows
        self._used = 0  # "device": rows handed out
        self._shape: tuple[int, ...] | None = None
        self._index: dict | None = None  # logical order, rebuilt lazily

    def _put(self, key: tuple[int, int], entry: dict, labels: torch.Tensor, images: torch.Tensor | None = None,
             where: list | None = None) -> None:
        """Cache a verified shard: its images (decoded; None for "none" or when the node cache has
        them) or, for "none", the (offset, size, suffix) of each image member."""
        shape = tuple(entry["shape"])
        if self._shape is not None and shape != self._shape:
            raise ValueError(f"image shape {shape} differs from the bank's {self._shape}")
        self._shape = shape
        n = labels.shape[0]
        if self.cache == "device":
            self._rows[key] = self._alloc(n, shape)
            self._buffer[self._rows[key] : self._rows[key] + n] = images.to(self._storage)
        elif self.cache == "cpu":
            self._mapped[key] = images.cpu().contiguous()
        elif self.cache == "node":
            self._mapped[key] = self._node.get(entry, lambda: images.numpy() if images is not None else
                                               self._decode(entry))
        else:
            path = str(self.root / entry["name"])
            self._locations[key] = [(path, off, size, sfx) for off, size, sfx in where]
        self._labels_of[key] = labels.to(torch.int64).cpu()
        self._entries[key] = entry
        self._index = None

    def _alloc(self, n: int, shape: tuple[int, ...]) -> int:
        """First buffer row of ``n`` free rows: a retired shard's rows of the same size if any, else
        the end of the buffer (grown by doubling)."""
        for i, (row, size) in enumerate(self._free):
            if size == n:
                del self._free[i]
                return row
        capacity = 0 if self._buffer is None else self._buffer.shape[0]
        if self._used + n > capacity:
            capacity = max(self._used + n, 2 * capacity, 256)
            try:
                grown = torch.empty((capacity, *shape), dtype=torch.uint8, device=self._storage)
            except torch.OutOfMemoryError:
                warnings.warn(f"memory bank of {capacity} images does not fit on {self._storage}; keeping it on CPU")
                self._storage = torch.device("cpu")
                grown = torch.empty((capacity, *shape), dtype=torch.uint8)
            if self._used:
                grown[: self._used] = self._buffer[: self._used].to(self._storage)
            self._buffer = grown
        row, self._used = self._used, self._used + n
        return row

    def _drop(self, key: tuple[int, int]) -> None:
        entry = self._entries.pop(key)
        labels = self._labels_of.pop(key)
        if key in self._rows:
            self._free.append((self._rows.pop(key), labels.shape[0]))
        self._mapped.pop(key, None)
        self._locations.pop(key, None)
        if self._node is not None:
            self._node.drop(entry)
        self._index = None

    def _load(self, rank: int, entry: dict) -> bool:
        """Verify, decode and cache one listed shard. False (warned, event kept) when it is damaged."""
        name = entry["name"]
        try:
            data = shards.verify(self.root / name, entry)
            want = self.cache in ("device", "cpu") or (self.cache == "node" and not self._node_has(entry))
            images, labels, where, _ = shards.read_shard(data, name, entry["shape"][0], images=want)
            if len(labels) != entry["num_samples"]:
                raise ShardError(name, f"holds {len(labels)} samples, the manifest lists {entry['num_samples']}")
            if images is not None and list(images.shape[1:]) != list(entry["shape"]):
                raise ShardError(name, f"images of shape {list(images.shape[1:])}, the manifest lists {entry['shape']}")
        except ShardError as err:
            self._bad.add(name)
            self._report("damaged_shard", name, f"{err.reason}; dropped from the memory bank "
                                                "(synthetic data can be made again), the run continues")
            return False
        self._put((rank, entry["index"]), entry, torch.from_numpy(labels),
                  torch.from_numpy(images) if images is not None else None, where)
        return True

    def _decode(self, entry: dict) -> np.ndarray:
        """The verified images of a listed shard (node cache: its file vanished since it was checked)."""
        data = shards.verify(self.root / entry["name"], entry)
        return shards.read_shard(data, entry["name"], entry["shape"][0])[0]

    def _node_has(self, entry: dict) -> bool:
        path = self._node._path(entry)
        return path.is_file() and path.stat().st_size == int(np.prod([entry["num_samples"], *entry["shape"]]))

    def _logical(self) -> dict:
        """Logical order: sorted live keys, their start offsets, and the labels in that order."""
        if self._index is None:
            keys = sorted(self._entries)
            sizes = [self._labels_of[k].shape[0] for k in keys]
            starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            labels = torch.cat([self._labels_of[k] for k in keys]) if keys else torch.empty(0, dtype=torch.int64)
            index = {"keys": keys, "starts": starts, "labels": labels, "device": {}}
            if self.cache == "device":
                base = torch.tensor([self._rows[k] for k in keys], dtype=torch.int64)
                shift = torch.repeat_interleave(base - torch.from_numpy(starts[:-1]),
                                                torch.tensor(sizes, dtype=torch.int64), output_size=int(starts[-1]))
                index["rows"] = shift + torch.arange(int(starts[-1]))  # physical row of every logical index
            self._index = index
        return self._index

    # ------------------------------------------------------------------------------------------
    # Writing and refreshing

    def write(self, images: torch.Tensor, labels: torch.Tensor, metadata: dict | None = None) -> str | None:
        """Write one shard atomically, list it in this rank's manifest and add it to the cache; with
        ``max_images``, retire what the retention policy says in the same manifest rewrite.

        Args:
            images: (N, C, H, W) float (any float dtype / device) with values in [0, 1], quantised to
                uint8 by rounding; or already uint8.
            labels: (N,) integer class labels.
            metadata: JSON-serialisable dict stored with every sample and in the manifest entry
                (its ``"epoch"``, if any, is copied to the entry's ``"epoch"``).

        Returns:
            The shard file name (relative to ``root``), or None when a reservoir did not admit it.

        Raises:
            ValueError: wrong shapes or dtypes, N == 0, N differing between images and labels,
                float values outside [0, 1] (or NaN), an image shape differing from the bank's,
                an encoding that cannot store the images, or N larger than this process's cap.
        """
        if images.dim() != 4 or labels.dim() != 1 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise ValueError(f"expected images (N, C, H, W) and labels (N,) with N > 0, got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
        if images.is_floating_point():
            lo, hi = images.min().item(), images.max().item()
            if not (lo >= 0.0 and hi <= 1.0):
                raise ValueError(f"float images must lie in [0, 1], got min {lo} max {hi}")
            images = (images.float() * 255).round().clamp(0, 255).to(torch.uint8)
        elif images.dtype != torch.uint8:
            raise ValueError(f"images must be float in [0, 1] or uint8, got {images.dtype}")
        if self._shape is not None and tuple(images.shape[1:]) != self._shape:
            raise ValueError(f"image shape {tuple(images.shape[1:])} differs from the bank's {self._shape}")
        shards.check_encoding(self.encoding, images.shape[1], self.quality)
        index, n = self._next_index, images.shape[0]
        admitted, retire, slot = retention.admit(self._own, index, n, self.cap, self.retirement, self.seed, self.rank)
        metadata = dict(metadata or {})
        images_cpu, labels_cpu = images.cpu().contiguous(), labels.cpu().to(torch.int64)
        name = self._shard_name(self.rank, index)
        entry = None
        if admitted:
            data = shards.shard_bytes(images_cpu, labels_cpu, f"{self.rank:03d}-{index:06d}", metadata,
                                      self.encoding, self.quality)
            entry = {"name": name, "rank": self.rank, "index": index, "num_samples": n,
                     "epoch": metadata.get("epoch"), "shape": list(images_cpu.shape[1:]), "metadata": metadata,
                     "encoding": self.encoding, **shards.describe(data)}
            if slot is not None:
                entry["slot"] = slot
            with atomic_path(self.root / name) as tmp:
                tmp.write_bytes(data)
            if self.encoding not in shards.LOSSLESS:  # cache what every reader (and a resume) will decode
                images_cpu = torch.from_numpy(shards.read_shard(data, name, images_cpu.shape[1])[0])
        gone = {e["name"] for e in retire}
        before = (self._own, self._retired, self._next_index)
        self._own = [e for e in self._own if e["name"] not in gone] + ([entry] if entry else [])
        self._retired = self._retired + retire
        self._next_index = index + 1
        try:
            self._write_manifest()
        except BaseException:
            self._own, self._retired, self._next_index = before
            if entry:
                (self.root / name).unlink(missing_ok=True)  # never leave a complete but unlisted shard behind
            raise
        for e in retire:
            if (self.rank, e["index"]) in self._entries:
                self._drop((self.rank, e["index"]))
        if entry:
            where = shards.read_shard(data, name, images=False)[2] if self.cache == "none" else None
            self._put((self.rank, index), entry, labels_cpu, images_cpu, where)
        return name if entry else None

    def refresh(self) -> int:
        """Bring the cache to every rank's current manifest: load listed shards not cached yet and
        drop other ranks' shards they retired. A damaged shard is warned about, reported in
        ``pop_events`` and skipped; a manifest of another rank that does not parse is warned
        about and that rank's cached shards are kept as they are.

        Returns:
            The change in the number of cached samples.
        """
        before = len(self)
        new = []
        for path in sorted(self.root.glob("manifest-r*.json")):
            rank = int(path.stem.split("-r")[-1])
            if rank == self.rank:
                listed = self._own
            else:
                try:
                    listed = self._read_manifest(rank)["shards"]
                except ValueError as err:
                    self._report("manifest_unreadable", path.name, f"{err}; keeping this rank's shards as cached")
                    continue
                names = {e["name"] for e in listed}
                for key in [k for k in self._entries if k[0] == rank and self._entries[k]["name"] not in names]:
                    self._drop(key)
            new += [(rank, e) for e in listed if (rank, e["index"]) not in self._entries and e["name"] not in self._bad]
        if self.cache == "node" and new:  # start at different shards: each is decoded by one process, mapped by the others
            shift = (int(os.environ.get("LOCAL_RANK", self.rank)) * len(new)) // max(1, self._local_processes())
            new = new[shift:] + new[:shift]
        for rank, entry in self._progress(new, "loading memory-bank shards"):
            self._load(rank, entry)
        return len(self) - before

    def _local_processes(self) -> int:
        return int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))

    def _progress(self, items: list, desc: str):
        """``items``, behind a progress bar when there are many shards to load (a resume)."""
        return tqdm(items, desc=desc, unit="shard", leave=False, disable=not self.progress or len(items) < 16)

    def release(self, referenced: Iterable[str]) -> list[str]:
        """Delete this rank's retired shard files that no kept checkpoint lists.

        Args:
            referenced: shard names listed by any kept checkpoint (``CheckpointManager.referenced``).

        Returns:
            The names deleted.
        """
        keep = set(referenced)
        gone = [e for e in self._retired if e["name"] not in keep]
        if not gone:
            return []
        self._retired = [e for e in self._retired if e["name"] in keep]
        self._write_manifest()  # first unlist, then delete: a crash in between leaves unlisted files
        for e in gone:
            (self.root / e["name"]).unlink(missing_ok=True)
        return [e["name"] for e in gone]

    # ------------------------------------------------------------------------------------------
    # Sampling

    def _gather(self, logical: torch.Tensor, pin: bool = False) -> torch.Tensor:
        """uint8 images (B, C, H, W) of logical indices ``logical`` (int64, on the CPU or, for the
        "device" cache, on its device), on the cache's device (host caches: CPU, pinned if ``pin``)."""
        index = self._logical()
        if self.cache == "device":
            rows = index["device"].get(self._storage)
            if rows is None:
                rows = index["device"][self._storage] = index["rows"].to(self._storage)
            if self._storage.type != "cpu":
                return self._buffer[rows[logical.to(self._storage, non_blocking=True)]]
            # numpy's take into a huge-page buffer: tensor indexing of uint8 rows was ~6x slower
            out = host_empty((logical.shape[0], *self._shape), pin=pin)
            np.take(self._buffer.numpy(), rows[logical].numpy(), axis=0, out=out.numpy(), mode="clip")
            return out
        flat = logical.numpy()
        shard = np.searchsorted(index["starts"], flat, side="right") - 1
        offsets = flat - index["starts"][shard]
        out = host_empty((len(flat), *self._shape), pin=pin)
        dest, keys = out.numpy(), index["keys"]
        order = np.argsort(shard, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(shard[order])) + 1)  # rows of the batch, by shard
        if self.cache == "none":
            def read(group: np.ndarray) -> None:  # one open per shard, one pread per image
                locations = self._locations[keys[shard[group[0]]]]
                with open(locations[0][0], "rb") as f:
                    for i in group:
                        _, off, size, suffix = locations[offsets[i]]
                        dest[i] = self._decode_member(os.pread(f.fileno(), size, off), suffix)
            list(self._pool.map(read, groups))
            return out
        for group in groups:  # numpy fancy indexing: a few microseconds per shard touched
            dest[group] = self._mapped[keys[shard[group[0]]]].numpy()[offsets[group]]
        return out

    def _decode_member(self, data: bytes, suffix: str) -> np.ndarray:
        """uint8 (C, H, W) of one image member; raw members (written by this class: C-order uint8
        arrays) skip the npy header parse: the pixels are the member's last C*H*W bytes."""
        if suffix == "npy":
            n = int(np.prod(self._shape))
            return np.frombuffer(data, dtype=np.uint8, count=n, offset=len(data) - n).reshape(self._shape)
        return shards.decode_image(data, suffix, self._shape[0])

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform sample with replacement, drawn with ``torch.randint`` on ``generator`` (its
        device; CPU if None) over the logical order: equal generator states give equal batches
        whatever the cache. A CUDA generator with a host cache costs one host sync (the student
        loop uses ``batches``, which has none).

        Returns:
            images (B, C, H, W) of ``dtype`` in [0, 1] and labels (B,) int64, both on ``device``.

        Raises:
            RuntimeError: the bank is empty (call write() or refresh() first).
        """
        self._check_not_empty()
        device = generator.device if generator is not None else torch.device("cpu")
        logical = torch.randint(len(self), (batch_size,), generator=generator, device=device)
        if self.cache == "device":
            return self._deliver({"logical": logical, "labels": self._labels_on(logical.device)[logical]}, dtype)
        logical = logical.cpu()
        return self._deliver({"images": self._gather(logical), "labels": self._logical()["labels"][logical]}, dtype)

    def _labels_on(self, device: torch.device) -> torch.Tensor:
        index = self._logical()
        key = ("labels", device)
        if key not in index["device"]:
            index["device"][key] = index["labels"].to(device)
        return index["device"][key]

    def _check_not_empty(self) -> None:
        if len(self) == 0:
            raise RuntimeError(f"memory bank at {self.root} is empty: write() or refresh() before sample()")

    def _stage(self, seed: int, batch_size: int, dtype: torch.dtype) -> dict:
        """Prefetch work for one batch (background thread): draw on the host and gather; for a
        CUDA device start the copies on a side stream (from pinned memory: no host sync), or leave
        the gather to the device (GPU cache); for a CPU device also convert, so the student step
        finds the batch ready."""
        logical = draw_indices(len(self), batch_size, seed)
        labels = self._logical()["labels"][logical]
        if self.cache == "device" and self._storage.type == "cuda":  # gathered on the GPU by _deliver
            return {"logical": logical.pin_memory(), "labels": labels.pin_memory()}
        if self.device.type != "cuda":
            images = self._gather(logical)
            if dtype is not None:  # images.to(dtype) / 255, in place in a huge-page buffer
                images = host_empty(images.shape, dtype).copy_(images).div_(255)
            return {"images": images, "labels": labels, "ready": True}
        images = self._gather(logical, pin=True)
        labels = labels.pin_memory()
        stream = self._side_stream()
        with torch.cuda.stream(stream):
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(stream)
        return {"images": images, "labels": labels, "event": event}

    def _side_stream(self):
        if getattr(self, "_stream", None) is None:
            self._stream = torch.cuda.Stream(device=self.device)
        return self._stream

    def _deliver(self, staged: dict, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Main-thread part of a batch: gather from a device cache, or make the current stream
        wait (on the device, not the host) for the side stream's copies; then convert."""
        labels = staged["labels"]
        if staged.get("ready"):  # CPU device: gathered and converted by the prefetching thread
            return staged["images"], labels
        images = self._gather(staged["logical"]) if "logical" in staged else staged["images"]
        event = staged.get("event")
        if event is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(event)
            images.record_stream(stream)
            labels.record_stream(stream)
        images = images.to(self.device, non_blocking=True)
        if dtype is not None:
            images = images.to(dtype) / 255
        return images, labels.to(self.device, non_blocking=True)

    def batches(self, batch_size: int, seeds: Iterable[int], prefetch: int = 2,
                dtype: torch.dtype | None = torch.float32) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One batch per seed (``nayer_scale.memory.sampler.batch_seed``), gathered ``prefetch``
        batches ahead in a background thread (0: inline; the batches are the same).

        Yields:
            images (B, C, H, W) of ``dtype`` in [0, 1] (``dtype=None``: the stored uint8 in
            [0, 255]) and labels (B,) int64, on ``device``.

        Raises:
            RuntimeError: the bank is empty.
        """
        self._check_not_empty()
        self._logical()  # built before the thread starts
        with Prefetcher(lambda s: self._stage(s, batch_size, dtype), seeds, prefetch) as batches:
            for staged in batches:
                yield self._deliver(staged, dtype)

    # ------------------------------------------------------------------------------------------
    # State

    def __len__(self) -> int:
        index = self._logical()
        return int(index["starts"][-1])

    @property
    def labels(self) -> torch.Tensor:
        """(len,) int64 CPU labels of the whole bank in logical order."""
        return self._logical()["labels"]

    @property
    def num_shards(self) -> int:
        """Number of live shards in the cache."""
        return len(self._entries)

    def images_of(self, rank: int, index: int) -> torch.Tensor:
        """The cached uint8 images (N, C, H, W) of shard (rank, index) (tests, export)."""
        key = (rank, index)
        logical = self._logical()
        k = logical["keys"].index(key)
        start, end = int(logical["starts"][k]), int(logical["starts"][k + 1])
        return self._gather(torch.arange(start, end)).cpu()

    def state_dict(self) -> dict:
        """``{"manifests": {rank: [entry, ...]}, "next_index": n}``: the live shards in the cache by
        rank and index, and this rank's shard counter. This rank is always present."""
        manifests: dict[int, list[dict]] = {self.rank: []}
        for rank, index in sorted(self._entries):
            manifests.setdefault(rank, []).append(dict(self._entries[(rank, index)]))
        return {"manifests": manifests, "next_index": self._next_index}

    def load_state_dict(self, state: dict) -> None:
        """Return to a state_dict() snapshot exactly.

        This rank's manifest is rewritten to the snapshot's live shards; its shards written after
        the snapshot are deleted; shards retired since are live again (their files are kept while a
        checkpoint lists them). A listed shard that is missing or damaged is named in a warning
        and an event, dropped, and the run continues (not exactly as before: its images are gone).
        """
        manifests = {int(rank): [dict(e) for e in entries] for rank, entries in state["manifests"].items()}
        own = manifests.get(self.rank, [])
        next_index = state.get("next_index", max((e["index"] for e in own), default=-1) + 1)
        live = {e["name"] for e in own}
        older = [e for e in self._own + self._retired if e["name"] not in live and e["index"] < next_index]
        self._own, self._retired, self._next_index = own, older, next_index
        self._write_manifest()
        self._clean_own_files(live | {e["name"] for e in older})
        self._reset_cache()
        self._bad.clear()
        listed = [(rank, entry) for rank in sorted(manifests) for entry in manifests[rank]]
        for rank, entry in self._progress(listed, "loading memory-bank shards"):
            if not self._load(rank, entry) and rank == self.rank:
                self._own = [e for e in self._own if e["name"] != entry["name"]]
                self._write_manifest()

    def close(self, remove_node_cache: bool = False) -> None:
        """Stop the reader threads; with ``remove_node_cache`` delete the node's shared-memory copy
        (one process per node, once the others are done with it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if remove_node_cache and self._node is not None:
            self._node.remove_all()
