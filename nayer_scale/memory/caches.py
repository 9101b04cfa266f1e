"""Where the memory bank's decoded images live: one ``Cache`` protocol, four implementations.

``memory.cache`` names one of them and ``make_cache`` builds it once, when the bank is made; the
bank then only calls the protocol:

- ``DeviceCache`` ("device"): one uint8 buffer of rows on the training device (grown by doubling;
  a retired shard's rows are reused by the next shard of the same size), falling back to the CPU
  when it stops fitting;
- ``HostCache`` ("cpu"): each shard's decoded images in this process's RAM;
- ``NodeCache`` ("node"): one decoded copy per node in shared memory
  (``nayer_scale.memory.node_cache.NodeFiles``), mapped by every process of the node;
- ``ShardReader`` ("none"): only the byte offset of every image member; the images are read from
  the shard files (one open per shard, one ``pread`` per image, in a thread pool) for every batch.

All four give the same batches for the same draws. ``CachedShards`` keeps what is cached (manifest
entries and labels by ``(rank, index)``) and the logical order: the live shards sorted by
``(rank, index)``, then by position inside the shard (``Order``); a draw picks logical indices,
whatever order the shards were loaded in (what makes resume exact).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from . import shards
from .node_cache import NodeFiles
from .sampler import host_empty

CACHES = ("device", "cpu", "node", "none")

__all__ = [
    "CACHES",
    "Cache",
    "CachedShards",
    "DeviceCache",
    "HostCache",
    "NodeCache",
    "Order",
    "ShardReader",
    "make_cache",
]

Key = tuple[int, int]  # (rank, index) of a shard
Members = Callable[[], list]  # the shard's (offset, size, suffix) of every image member, on demand


@dataclass
class Order:
    """The logical order of the cached shards (rebuilt whenever a shard is added or dropped).

    Attributes:
        keys: the cached shards' (rank, index), sorted.
        starts: (len(keys) + 1,) int64: the first logical index of every shard, then the total.
        sizes: images of every shard.
        labels: (size,) int64 CPU labels in logical order.
        shape: (C, H, W) of every image (None while the bank is empty).
    """

    keys: list[Key]
    starts: np.ndarray
    sizes: list[int]
    labels: torch.Tensor
    shape: tuple[int, ...] | None
    _labels_on: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Images in the bank."""
        return int(self.starts[-1])

    def labels_on(self, device: torch.device) -> torch.Tensor:
        """``labels`` on ``device`` (copied once per order)."""
        if device not in self._labels_on:
            self._labels_on[device] = self.labels.to(device)
        return self._labels_on[device]


class Cache(Protocol):
    """Decoded images of the bank's live shards, by key; gathers batches by logical index."""

    name: str  # the ``memory.cache`` value

    @property
    def gathers_on_device(self) -> bool:
        """True when batches are gathered on the CUDA device itself (a device cache on a GPU):
        the prefetching thread then hands over indices, not images."""

    def reset(self) -> None:
        """Forget every shard (``load_state_dict``)."""

    def wants_images(self, entry: dict) -> bool:
        """Whether ``put`` needs the shard's decoded images (else it is given None)."""

    def put(self, key: Key, entry: dict, images: torch.Tensor | None, members: Members) -> None:
        """Cache a verified shard: ``images`` (N, C, H, W) uint8 CPU, or None when
        ``wants_images(entry)`` was False."""

    def drop(self, key: Key, entry: dict) -> None:
        """Forget a shard (retired or no longer listed)."""

    def prepare(self, order: Order) -> None:
        """Called with every new logical order, before any gather over it."""

    def gather(self, logical: torch.Tensor, order: Order, pin: bool = False) -> torch.Tensor:
        """uint8 images (B, C, H, W) of logical indices ``logical`` (int64, on the CPU or, for the
        device cache, on its device), on the cache's device (host caches: CPU, pinned if ``pin``)."""

    def sampled(self, logical: torch.Tensor, order: Order) -> dict:
        """The staged batch (``nayer_scale.memory.staging``) of a draw ``logical`` made on any
        device by ``MemoryBank.sample``."""

    def load_order(self, new: list) -> list:
        """The order in which to load the shards ``new`` (a list of (rank, entry))."""

    def close(self, remove_shared: bool) -> None:
        """Stop reader threads; with ``remove_shared`` delete what is shared by the node."""


class DeviceCache:
    """``memory.cache=device``: one (capacity, C, H, W) uint8 buffer on ``device`` (CPU if it stops
    fitting); shard ``key`` occupies rows ``[row, row + n)``.

    Args:
        device: the training device.
    """

    name = "device"

    storage: torch.device  # where the buffer is (the CPU after an out-of-memory fallback)

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    @property
    def gathers_on_device(self) -> bool:
        return self.storage.type == "cuda"

    def reset(self) -> None:
        self.storage = self.device
        self._rows: dict[Key, tuple[int, int]] = {}  # (first row, n) of every cached shard
        self._buffer: torch.Tensor | None = None  # (capacity, C, H, W) uint8
        self._free: list[tuple[int, int]] = []  # (row, n) of retired shards' rows
        self._used = 0  # rows handed out
        self._logical_rows = torch.empty(0, dtype=torch.int64)  # physical row of every logical index
        self._rows_on: dict[torch.device, torch.Tensor] = {}  # _logical_rows on a device, copied once

    def wants_images(self, entry: dict) -> bool:
        return True

    def put(self, key: Key, entry: dict, images: torch.Tensor | None, members: Members) -> None:
        n = images.shape[0]
        row = self._alloc(n, tuple(entry["shape"]))
        self._rows[key] = (row, n)
        self._buffer[row : row + n] = images.to(self.storage)

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
                grown = torch.empty((capacity, *shape), dtype=torch.uint8, device=self.storage)
            except torch.OutOfMemoryError:
                warnings.warn(f"memory bank of {capacity} images does not fit on {self.storage}; keeping it on CPU")
                self.storage = torch.device("cpu")
                grown = torch.empty((capacity, *shape), dtype=torch.uint8)
            if self._used:
                grown[: self._used] = self._buffer[: self._used].to(self.storage)
            self._buffer = grown
        row, self._used = self._used, self._used + n
        return row

    def drop(self, key: Key, entry: dict) -> None:
        self._free.append(self._rows.pop(key))

    def prepare(self, order: Order) -> None:
        base = torch.tensor([self._rows[k][0] for k in order.keys], dtype=torch.int64)
        shift = torch.repeat_interleave(
            base - torch.from_numpy(order.starts[:-1]),
            torch.tensor(order.sizes, dtype=torch.int64),
            output_size=order.size,
        )
        self._logical_rows = shift + torch.arange(order.size)
        self._rows_on = {}

    def gather(self, logical: torch.Tensor, order: Order, pin: bool = False) -> torch.Tensor:
        rows = self._rows_on.get(self.storage)
        if rows is None:
            rows = self._rows_on[self.storage] = self._logical_rows.to(self.storage)
        if self.storage.type != "cpu":
            return self._buffer[rows[logical.to(self.storage, non_blocking=True)]]
        # numpy's take into a huge-page buffer: tensor indexing of uint8 rows was ~6x slower
        out = host_empty((logical.shape[0], *order.shape), pin=pin)
        np.take(self._buffer.numpy(), rows[logical].numpy(), axis=0, out=out.numpy(), mode="clip")
        return out

    def sampled(self, logical: torch.Tensor, order: Order) -> dict:
        return {"logical": logical, "labels": order.labels_on(logical.device)[logical]}

    def load_order(self, new: list) -> list:
        return new

    def close(self, remove_shared: bool) -> None:
        pass


def _by_shard(logical: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(shard of every index, offset inside it, the batch rows grouped by shard)."""
    shard = np.searchsorted(starts, logical, side="right") - 1
    offsets = logical - starts[shard]
    order = np.argsort(shard, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(shard[order])) + 1)
    return shard, offsets, groups


class HostCache:
    """``memory.cache=cpu``: every shard's decoded (N, C, H, W) uint8 images in this process's RAM."""

    name = "cpu"

    def __init__(self) -> None:
        self._mapped: dict[Key, torch.Tensor] = {}

    @property
    def gathers_on_device(self) -> bool:
        return False

    def reset(self) -> None:
        self._mapped = {}

    def wants_images(self, entry: dict) -> bool:
        return True

    def put(self, key: Key, entry: dict, images: torch.Tensor | None, members: Members) -> None:
        self._mapped[key] = images.cpu().contiguous()

    def drop(self, key: Key, entry: dict) -> None:
        self._mapped.pop(key, None)

    def prepare(self, order: Order) -> None:
        pass

    def gather(self, logical: torch.Tensor, order: Order, pin: bool = False) -> torch.Tensor:
        flat = logical.numpy()
        shard, offsets, groups = _by_shard(flat, order.starts)
        out = host_empty((len(flat), *order.shape), pin=pin)
        dest = out.numpy()
        for group in groups:  # numpy fancy indexing: a few microseconds per shard touched
            dest[group] = self._mapped[order.keys[shard[group[0]]]].numpy()[offsets[group]]
        return out

    def sampled(self, logical: torch.Tensor, order: Order) -> dict:
        logical = logical.cpu()
        return {"images": self.gather(logical, order), "labels": order.labels[logical]}

    def load_order(self, new: list) -> list:
        return new

    def close(self, remove_shared: bool) -> None:
        pass


class NodeCache(HostCache):
    """``memory.cache=node``: a host cache whose images are shared mappings of the node's one copy
    (``NodeFiles``); each shard is decoded by the first process of the node that needs it.

    Args:
        root: the bank's folder (the key of the node's files, and where shards are read again).
        shm_dir: folder of the node's files (default ``/dev/shm``).
        rank, world_size: this process and the number of processes (the load order).
    """

    name = "node"

    def __init__(self, root: Path, shm_dir: str | os.PathLike | None, rank: int, world_size: int) -> None:
        super().__init__()
        self.root, self.rank, self.world_size = root, rank, world_size
        self.files = NodeFiles(root, shm_dir)

    def wants_images(self, entry: dict) -> bool:
        return not self.files.has(entry)

    def put(self, key: Key, entry: dict, images: torch.Tensor | None, members: Members) -> None:
        self._mapped[key] = self.files.get(entry, lambda: images.numpy() if images is not None else self._decode(entry))

    def _decode(self, entry: dict) -> np.ndarray:
        """The verified images of a listed shard (its node file vanished since it was checked)."""
        data = shards.verify(self.root / entry["name"], entry)
        return shards.read_shard(data, entry["name"], entry["shape"][0])[0]

    def drop(self, key: Key, entry: dict) -> None:
        super().drop(key, entry)
        self.files.drop(entry)

    def load_order(self, new: list) -> list:
        """Start at different shards: each is decoded by one process, mapped by the others."""
        if not new:
            return new
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
        shift = (int(os.environ.get("LOCAL_RANK", self.rank)) * len(new)) // max(1, local)
        return new[shift:] + new[:shift]

    def close(self, remove_shared: bool) -> None:
        if remove_shared:
            self.files.remove_all()


class ShardReader:
    """``memory.cache=none``: the (path, offset, size, suffix) of every image; batches are read
    from the shard files with ``read_threads`` threads.

    Args:
        root: the bank's folder.
        read_threads: threads reading images (one shard per task).
    """

    name = "none"

    def __init__(self, root: Path, read_threads: int) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(read_threads)
        self._locations: dict[Key, list[tuple[str, int, int, str]]] = {}

    @property
    def gathers_on_device(self) -> bool:
        return False

    def reset(self) -> None:
        self._locations = {}

    def wants_images(self, entry: dict) -> bool:
        return False

    def put(self, key: Key, entry: dict, images: torch.Tensor | None, members: Members) -> None:
        path = str(self.root / entry["name"])
        self._locations[key] = [(path, off, size, sfx) for off, size, sfx in members()]

    def drop(self, key: Key, entry: dict) -> None:
        self._locations.pop(key, None)

    def prepare(self, order: Order) -> None:
        pass

    def gather(self, logical: torch.Tensor, order: Order, pin: bool = False) -> torch.Tensor:
        flat = logical.numpy()
        shard, offsets, groups = _by_shard(flat, order.starts)
        out = host_empty((len(flat), *order.shape), pin=pin)
        dest = out.numpy()

        def read(group: np.ndarray) -> None:  # one open per shard, one pread per image
            locations = self._locations[order.keys[shard[group[0]]]]
            with open(locations[0][0], "rb") as f:
                for i in group:
                    _, off, size, suffix = locations[offsets[i]]
                    dest[i] = _decode_member(os.pread(f.fileno(), size, off), suffix, order.shape)

        list(self._pool.map(read, groups))
        return out

    def sampled(self, logical: torch.Tensor, order: Order) -> dict:
        logical = logical.cpu()
        return {"images": self.gather(logical, order), "labels": order.labels[logical]}

    def load_order(self, new: list) -> list:
        return new

    def close(self, remove_shared: bool) -> None:
        self._pool.shutdown(wait=False)


def _decode_member(data: bytes, suffix: str, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 (C, H, W) of one image member; raw members (written by the bank: C-order uint8
    arrays) skip the npy header parse: the pixels are the member's last C*H*W bytes."""
    if suffix == "npy":
        n = int(np.prod(shape))
        return np.frombuffer(data, dtype=np.uint8, count=n, offset=len(data) - n).reshape(shape)
    return shards.decode_image(data, suffix, shape[0])


def make_cache(
    kind: str,
    root: Path,
    device: torch.device,
    rank: int,
    world_size: int,
    read_threads: int,
    shm_dir: str | os.PathLike | None,
) -> Cache:
    """The cache named ``kind`` (one of ``CACHES``), built once for a bank at ``root``.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}, got {kind!r}")
    if kind == "device":
        return DeviceCache(device)
    if kind == "cpu":
        return HostCache()
    if kind == "node":
        return NodeCache(root, shm_dir, rank, world_size)
    return ShardReader(root, read_threads)


class CachedShards:
    """What a bank holds in its cache: the manifest entry and labels of every live shard by
    ``(rank, index)``, the image shape, and the logical order (built lazily, once per change).

    Args:
        cache: where the images go.
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.entries: dict[Key, dict] = {}
        self._labels: dict[Key, torch.Tensor] = {}  # (N,) int64 CPU
        self.shape: tuple[int, ...] | None = None
        self._order: Order | None = None

    def clear(self) -> None:
        """Forget every shard and the image shape."""
        self.cache.reset()
        self.entries, self._labels, self.shape, self._order = {}, {}, None, None

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raises ValueError when images of ``shape`` cannot join the bank."""
        if self.shape is not None and shape != self.shape:
            raise ValueError(f"image shape {shape} differs from the bank's {self.shape}")

    def put(self, key: Key, entry: dict, labels: torch.Tensor, images: torch.Tensor | None, members: Members) -> None:
        """Cache a verified shard: its labels (N,) and ``images`` (see ``Cache.put``).

        Raises:
            ValueError: its image shape differs from the bank's.
        """
        shape = tuple(entry["shape"])
        self.check_shape(shape)
        self.shape = shape
        self.cache.put(key, entry, images, members)
        self._labels[key] = labels.to(torch.int64).cpu()
        self.entries[key] = entry
        self._order = None

    def drop(self, key: Key) -> None:
        """Forget a cached shard."""
        entry = self.entries.pop(key)
        self._labels.pop(key)
        self.cache.drop(key, entry)
        self._order = None

    def order(self) -> Order:
        """The logical order of the cached shards."""
        if self._order is None:
            keys = sorted(self.entries)
            sizes = [self._labels[k].shape[0] for k in keys]
            starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            labels = torch.cat([self._labels[k] for k in keys]) if keys else torch.empty(0, dtype=torch.int64)
            order = Order(keys, starts, sizes, labels, self.shape)
            self.cache.prepare(order)
            self._order = order
        return self._order

    def __len__(self) -> int:
        return self.order().size
