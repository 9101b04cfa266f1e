"""Sharded, crash-safe, optionally bounded memory bank of synthetic images: the facade.

In NAYER the best synthetic batch of every synthesis round goes into a memory and the student
trains on uniform random samples from all of it. The published code kept one PNG per image in a
folder and re-scanned (and re-decoded) that folder for every student batch. Here the memory is a
folder ``root`` of WebDataset tar shards, ``shard-r{r:03d}-{index:06d}.tar``
(``nayer_scale.memory.shards``), plus one JSON manifest per process, ``manifest-r{r:03d}.json``
(``nayer_scale.memory.manifest``: format, atomic rewrites, rebuild, retirement); rank ``r`` writes
only its own files. Each shard is decoded once into the cache named by ``cache``
(``nayer_scale.memory.caches``: "device", "cpu", "node" or "none", all giving the same batches for
the same draws), and student batches are drawn and gathered ahead of the student step
(``nayer_scale.memory.staging``). ``MemoryBank`` ties them together.

A shard is written to a temporary file, fsync'ed and renamed into place before the manifest that
lists it is rewritten the same way, with the shards it retires (``max_images``,
``nayer_scale.memory.retention``) in the same rewrite; a retired shard's file is deleted by
``release`` only when no kept checkpoint lists it, so every kept checkpoint resumes exactly.
Readers only open listed shards and check each against its size and SHA-256; a damaged one is
named in a warning and an event (``pop_events``, logged to ``metrics.jsonl``), dropped, and the run
goes on. Logically the bank is ordered by ``(rank, index)`` of its live shards, then by position
inside the shard, whatever order they were loaded in; a draw picks logical indices (what makes
resume exact).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import retention, shards
from .caches import CACHES, CachedShards, make_cache
from .manifest import FORMAT, SHARD_PATTERN, Manifest, read_listed, shard_name
from .shards import ShardError
from .staging import Staging

__all__ = ["CACHES", "FORMAT", "MemoryBank", "SHARD_PATTERN"]


class MemoryBank:
    """Memory of synthetic images shared by all processes through sharded tar files.

    Args:
        root: folder of shards and manifests (created if missing).
        rank, world_size: this process and the number of processes; rank ``r`` writes only
            ``shard-r{r:03d}-*.tar`` and ``manifest-r{r:03d}.json``.
        device: where ``sample``/``batches`` return batches.
        cache: "device", "cpu", "node" or "none" (``nayer_scale.memory.caches``).
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

    def __init__(
        self,
        root: str | os.PathLike,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        cache: str = "device",
        read_threads: int = 8,
        progress: bool = False,
        max_images: int = 0,
        retirement: str = "fifo",
        encoding: str = "raw",
        quality: int | None = None,
        seed: int = 0,
        shm_dir: str | os.PathLike | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
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
        self._cached = CachedShards(make_cache(cache, self.root, self.device, rank, world_size, read_threads, shm_dir))
        self._staging = Staging(self._cached, self.device)
        self._events: list[dict] = []
        self._bad: set[str] = set()  # damaged shards already reported (not retried)
        self._manifest = Manifest(self.root, rank, self.cap, self._report)

    def _report(self, event: str, name: str, reason: str) -> None:
        """Warn and keep an event for ``pop_events`` (the trainer logs them to metrics.jsonl)."""
        warnings.warn(f"memory bank: {name}: {reason}", RuntimeWarning, stacklevel=3)
        self._events.append({"event": event, "file": name, "reason": reason, "rank": self.rank})

    def pop_events(self) -> list[dict]:
        """Damaged shards dropped and manifests rebuilt since the last call (then forgotten)."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------------------------------
    # Writing, loading, releasing

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
        images = shards.as_uint8(images, labels)
        self._cached.check_shape(tuple(images.shape[1:]))
        shards.check_encoding(self.encoding, images.shape[1], self.quality)
        index, n = self._manifest.next_index, images.shape[0]
        admitted, retire, slot = retention.admit(
            self._manifest.live, index, n, self.cap, self.retirement, self.seed, self.rank
        )
        metadata = dict(metadata or {})
        images_cpu, labels_cpu = images.cpu().contiguous(), labels.cpu().to(torch.int64)
        name = shard_name(self.rank, index)
        entry, data = None, b""
        if admitted:
            entry, data, images_cpu = self._manifest.write_shard(
                index, images_cpu, labels_cpu, metadata, self.encoding, self.quality, slot
            )
        self._manifest.commit(index, entry, retire)
        for e in retire:
            if (self.rank, e["index"]) in self._cached.entries:
                self._cached.drop((self.rank, e["index"]))
        if entry:
            self._cached.put(
                (self.rank, index),
                entry,
                labels_cpu,
                images_cpu,
                lambda: shards.read_shard(data, name, images=False)[2],
            )
        return name if entry else None

    def _load(self, rank: int, entry: dict) -> bool:
        """Verify, decode and cache one listed shard. False (warned, event kept) when it is damaged."""
        name = entry["name"]
        try:
            images, labels, where = read_listed(self.root, entry, self._cached.cache.wants_images(entry))
        except ShardError as err:
            self._bad.add(name)
            self._report(
                "damaged_shard",
                name,
                f"{err.reason}; dropped from the memory bank (synthetic data can be made again), the run continues",
            )
            return False
        self._cached.put(
            (rank, entry["index"]),
            entry,
            torch.from_numpy(labels),
            torch.from_numpy(images) if images is not None else None,
            lambda: where,
        )
        return True

    def refresh(self) -> int:
        """Bring the cache to every rank's current manifest: load listed shards not cached yet and
        drop other ranks' shards they retired. A damaged shard is warned about, reported in
        ``pop_events`` and skipped; a manifest of another rank that does not parse is warned
        about and that rank's cached shards are kept as they are.

        Returns:
            The change in the number of cached samples.
        """
        before = len(self)
        new, cached = [], self._cached.entries
        for rank, listed in self._manifest.listings():
            if rank != self.rank:
                names = {e["name"] for e in listed}
                for key in [k for k in cached if k[0] == rank and cached[k]["name"] not in names]:
                    self._cached.drop(key)
            new += [(rank, e) for e in listed if (rank, e["index"]) not in cached and e["name"] not in self._bad]
        for rank, entry in self._progress(self._cached.cache.load_order(new), "loading memory-bank shards"):
            self._load(rank, entry)
        return len(self) - before

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
        return self._manifest.release(referenced)

    # ------------------------------------------------------------------------------------------
    # Sampling

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
        return self._staging.sample(batch_size, generator, dtype)

    def batches(
        self, batch_size: int, seeds: Iterable[int], prefetch: int = 2, dtype: torch.dtype | None = torch.float32
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One batch per seed (``nayer_scale.memory.sampler.batch_seed``), gathered ``prefetch``
        batches ahead in a background thread (0: inline; the batches are the same).

        Yields:
            images (B, C, H, W) of ``dtype`` in [0, 1] (``dtype=None``: the stored uint8 in
            [0, 255]) and labels (B,) int64, on ``device``.

        Raises:
            RuntimeError: the bank is empty.
        """
        self._check_not_empty()
        yield from self._staging.batches(batch_size, seeds, prefetch, dtype)

    def _check_not_empty(self) -> None:
        if len(self) == 0:
            raise RuntimeError(f"memory bank at {self.root} is empty: write() or refresh() before sample()")

    # ------------------------------------------------------------------------------------------
    # State

    def __len__(self) -> int:
        return len(self._cached)

    @property
    def labels(self) -> torch.Tensor:
        """(len,) int64 CPU labels of the whole bank in logical order."""
        return self._cached.order().labels

    @property
    def num_shards(self) -> int:
        """Number of live shards in the cache."""
        return len(self._cached.entries)

    def images_of(self, rank: int, index: int) -> torch.Tensor:
        """The cached uint8 images (N, C, H, W) of shard (rank, index) (tests, export)."""
        order = self._cached.order()
        k = order.keys.index((rank, index))
        start, end = int(order.starts[k]), int(order.starts[k + 1])
        return self._cached.cache.gather(torch.arange(start, end), order).cpu()

    def state_dict(self) -> dict:
        """``{"manifests": {rank: [entry, ...]}, "next_index": n}``: the live shards in the cache by
        rank and index, and this rank's shard counter. This rank is always present."""
        manifests: dict[int, list[dict]] = {self.rank: []}
        for rank, index in sorted(self._cached.entries):
            manifests.setdefault(rank, []).append(dict(self._cached.entries[(rank, index)]))
        return {"manifests": manifests, "next_index": self._manifest.next_index}

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
        self._manifest.restore(own, next_index)
        self._cached.clear()
        self._bad.clear()
        listed = [(rank, entry) for rank in sorted(manifests) for entry in manifests[rank]]
        for rank, entry in self._progress(listed, "loading memory-bank shards"):
            if not self._load(rank, entry) and rank == self.rank:
                self._manifest.unlist(entry["name"])

    def close(self, remove_node_cache: bool = False) -> None:
        """Stop the reader threads; with ``remove_node_cache`` delete the node's shared-memory copy
        (one process per node, once the others are done with it)."""
        self._cached.cache.close(remove_node_cache)
