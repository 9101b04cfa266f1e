"""Sharded, crash-safe memory bank of synthetic images.

In NAYER the best synthetic batch of every synthesis round goes into a memory and the student
trains on uniform random samples from *all* memory so far. The published code kept one PNG per
image in a folder and re-scanned (and re-decoded) that folder for every student batch. Here the
memory is a directory ``root`` of WebDataset tar shards plus one JSON manifest per process, and
every shard is decoded exactly once into an in-memory cache (on the training device when it fits),
so sampling a batch is a single gather.

Layout and atomicity protocol (``root`` is shared by all processes; rank ``r`` writes only its own
files)::

    shard-r{r:03d}-{index:06d}.tar   one per write() call; samples ``{r:03d}-{index:06d}-{i:06d}``
                                     with members img.npy (uint8 (C,H,W)), cls (label), json (metadata)
    manifest-r{r:03d}.json           {"format": 1, "rank": r, "shards": [entry, ...]}

1. The shard is written to a temporary ``shard-....tar.<pid>.<random>.tmp``, flushed, fsync'ed and
   closed, then renamed with ``os.replace`` (atomic on POSIX) to its final name and the folder is
   fsync'ed (``nayer_scale.storage.atomic_path``).
2. Only then is the manifest rewritten the same way (``atomic_write_json``) with the new entry
   appended.

Readers only ever open shards listed in a manifest, so they never see a partial shard; a crash
leaves at most a ``.tmp`` file or an unlisted shard of the crashed rank, both of which that rank
deletes when it starts again.

Where the images live between write and sample (``cache``): "device" keeps the decoded uint8
images on the training device (falls back to CPU if they stop fitting), "cpu" in host RAM, "none"
keeps only labels and the byte offsets of each image inside its shard (found with ``tarfile`` when
the shard is loaded) and reads the sampled images from the shard files on every step, with a
thread pool (ImageNet: the bank outgrows any cache; put ``root`` on fast shared or node-local
storage). All three return the same batches for the same generator state.

Cache order rule (what makes resume exact): logically the cache is always ordered by
``(rank, index)`` of the shards, then by sample position inside the shard, whatever order the
shards were loaded in (own write() first, then refresh(), or a rebuild in load_state_dict()).
Physically shards are appended to a growing buffer in load order (amortised doubling, so adding a
shard costs O(shard)); sample() draws a uniform logical index and maps it to its physical row.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from tqdm.auto import tqdm
from webdataset import tariterators

from ..storage import atomic_path, atomic_write_json

FORMAT = 1


class MemoryBank:
    """Memory of synthetic images shared by all processes through sharded tar files.

    Args:
        root: directory of shards and manifests (created if missing).
        rank, world_size: this process and the number of processes; rank ``r`` writes only
            ``shard-r{r:03d}-*.tar`` and ``manifest-r{r:03d}.json``.
        device: where sample() returns batches.
        cache_on_device: keep the uint8 cache on ``device`` (falls back to CPU if it does not
            fit); if False the cache stays on CPU and only sampled batches are moved.
        cache: "device", "cpu" or "none" (see the module docstring); overrides ``cache_on_device``.
        read_threads: threads reading images from shard files when ``cache="none"``.
        progress: show a progress bar while loading many shards at once (resume, refresh).

    Raises:
        ValueError: rank outside [0, world_size) or an unknown cache.
    """

    def __init__(self, root: str | os.PathLike, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu", cache_on_device: bool = True, cache: str | None = None,
                 read_threads: int = 8, progress: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        cache = cache or ("device" if cache_on_device else "cpu")
        if cache not in ("device", "cpu", "none"):
            raise ValueError(f"cache must be device, cpu or none, got {cache!r}")
        self.cache = cache
        self.progress = progress
        self._pool = ThreadPoolExecutor(read_threads) if cache == "none" else None
        self.root = Path(root)
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.root.mkdir(parents=True, exist_ok=True)
        own = self._read_manifest(rank)
        self._clean_own_files({e["name"] for e in own})
        self._next_index = max((e["index"] for e in own), default=-1) + 1
        self._own_entries = list(own)  # this rank's manifest, as on disk
        self._cache_device = self.device if cache == "device" else torch.device("cpu")
        self._reset_cache()

    # ------------------------------------------------------------------------------------------
    # Files

    def _shard_name(self, rank: int, index: int) -> str:
        return f"shard-r{rank:03d}-{index:06d}.tar"

    def _manifest_path(self, rank: int) -> Path:
        return self.root / f"manifest-r{rank:03d}.json"

    def _read_manifest(self, rank: int) -> list[dict]:
        path = self._manifest_path(rank)
        if not path.is_file():
            return []
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise RuntimeError(f"{path}: unsupported memory-bank manifest format {data.get('format')!r}")
        return data["shards"]

    def _write_manifest(self, entries: list[dict]) -> None:
        atomic_write_json(self._manifest_path(self.rank), {"format": FORMAT, "rank": self.rank, "shards": entries},
                          indent=1)

    def _clean_own_files(self, keep: set[str]) -> None:
        """Delete this rank's ``.tmp`` files and shards not listed in ``keep``."""
        prefix = f"shard-r{self.rank:03d}-"
        for path in self.root.iterdir():
            stale_tmp = path.name.endswith(".tmp") and (  # temporary files of nayer_scale.storage.atomic_path
                path.name.startswith(prefix) or path.name.startswith(self._manifest_path(self.rank).name + "."))
            unlisted = path.name.startswith(prefix) and path.name.endswith(".tar") and path.name not in keep
            if stale_tmp or unlisted:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------
    # Cache

    def _reset_cache(self) -> None:
        self._storage = self._cache_device
        self._images: torch.Tensor | None = None  # (capacity, C, H, W) uint8; cache "none": (0, C, H, W)
        self._labels: torch.Tensor | None = None  # (capacity,) int64
        self._locations: list[tuple[str, int, int]] = []  # cache "none": (shard path, offset, size) per row
        self._size = 0
        self._cached: dict[tuple[int, int], tuple[dict, int]] = {}  # (rank, index) -> (entry, row)
        self._maps: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _grow(self, needed: int, shape: tuple[int, ...]) -> None:
        capacity = 0 if self._labels is None else self._labels.shape[0]
        if needed <= capacity:
            return
        capacity = max(needed, 2 * capacity, 256)
        try:
            rows = 0 if self.cache == "none" else capacity  # "none" keeps the shape only
            images = torch.empty((rows, *shape), dtype=torch.uint8, device=self._storage)
        except torch.OutOfMemoryError:
            warnings.warn(f"memory bank of {capacity} images does not fit on {self._storage}; keeping it on CPU")
            self._storage = torch.device("cpu")
            images = torch.empty((capacity, *shape), dtype=torch.uint8)
        labels = torch.empty(capacity, dtype=torch.int64, device=self._storage)
        if self._size:
            if self.cache != "none":
                images[: self._size] = self._images[: self._size]
            labels[: self._size] = self._labels[: self._size]
        self._images, self._labels = images, labels

    def _add(self, rank: int, entry: dict, images: torch.Tensor | None, labels: torch.Tensor,
             shape: tuple[int, ...] | None = None) -> None:
        shape = tuple(images.shape[1:]) if images is not None else tuple(shape)
        if self._images is not None and shape != tuple(self._images.shape[1:]):
            raise ValueError(f"image shape {shape} differs from the bank's {tuple(self._images.shape[1:])}")
        n = labels.shape[0]
        self._grow(self._size + n, shape)
        if self.cache == "none":
            self._locations.extend(self._image_locations(rank, entry))
        else:
            self._images[self._size : self._size + n] = images.to(self._storage)
        self._labels[self._size : self._size + n] = labels.to(self._storage, torch.int64)
        self._cached[(rank, entry["index"])] = (entry, self._size)
        self._size += n
        self._maps.clear()

    def _image_locations(self, rank: int, entry: dict) -> list[tuple[str, int, int]]:
        """(path, byte offset, size) of every img.npy member of a shard, in sample order (reads tar
        headers only). RuntimeError if the count differs from the manifest entry."""
        path = self.root / entry["name"]
        with tarfile.open(path, "r:") as tar:
            found = [(str(path), m.offset_data, m.size) for m in tar if m.name.endswith(".img.npy")]
        if len(found) != entry["num_samples"]:
            raise RuntimeError(f"{path} holds {len(found)} samples, its manifest lists {entry['num_samples']}")
        return found

    def _load_shard(self, rank: int, entry: dict) -> None:
        path = self.root / entry["name"]
        if not path.is_file():
            raise FileNotFoundError(f"memory-bank shard listed in manifest-r{rank:03d}.json is missing: {path}")
        if self.cache == "none":  # labels only: images are read when sampled
            with tarfile.open(path, "r:") as tar:
                labels = [int(tar.extractfile(m).read()) for m in tar if m.name.endswith(".cls")]
            self._add(rank, entry, None, torch.tensor(labels, dtype=torch.int64), shape=entry["shape"])
            return
        images, labels = [], []
        with open(path, "rb") as f:  # webdataset's streaming tar reader; the json member is not needed
            members = tariterators.tar_file_expander([{"url": str(path), "stream": f}],
                                                     select_files=lambda name: not name.endswith(".json"))
            for sample in tariterators.group_by_keys(members):
                images.append(torch.from_numpy(np.load(io.BytesIO(sample["img.npy"]), allow_pickle=False)))
                labels.append(int(sample["cls"]))
        if len(images) != entry["num_samples"]:
            raise RuntimeError(f"{path} holds {len(images)} samples, its manifest lists {entry['num_samples']}")
        self._add(rank, entry, torch.stack(images), torch.tensor(labels, dtype=torch.int64))

    def _index_map(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(logical start, physical row) of each cached shard, shards sorted by (rank, index)."""
        if device not in self._maps:
            logical, rows, total = [], [], 0
            for key in sorted(self._cached):
                entry, row = self._cached[key]
                logical.append(total)
                rows.append(row)
                total += entry["num_samples"]
            self._maps[device] = (torch.tensor(logical, device=device), torch.tensor(rows, device=device))
        return self._maps[device]

    # ------------------------------------------------------------------------------------------
    # Public API

    def write(self, images: torch.Tensor, labels: torch.Tensor, metadata: dict | None = None) -> str:
        """Write one shard atomically, list it in this rank's manifest and add it to the cache.

        Args:
            images: (N, C, H, W) float (any float dtype / device) with values in [0, 1], quantised to
                uint8 by rounding; or already uint8.
            labels: (N,) integer class labels.
            metadata: JSON-serialisable dict stored with every sample and in the manifest entry
                (its ``"epoch"``, if any, is copied to the entry's ``"epoch"``).

        Returns:
            The shard file name (relative to ``root``).

        Raises:
            ValueError: wrong shapes or dtypes, N == 0, N differing between images and labels,
                float values outside [0, 1] (or NaN), or an image shape differing from the cache's.
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
        if self._images is not None and tuple(images.shape[1:]) != tuple(self._images.shape[1:]):
            raise ValueError(f"image shape {tuple(images.shape[1:])} differs from the bank's "
                             f"{tuple(self._images.shape[1:])}")
        metadata = dict(metadata or {})
        meta_bytes = json.dumps(metadata).encode()
        images_cpu, labels_cpu = images.cpu().contiguous(), labels.cpu().to(torch.int64)
        index, name = self._next_index, self._shard_name(self.rank, self._next_index)
        final = self.root / name
        # Streamed into a temporary file that atomic_path fsyncs and renames, then it fsyncs the folder.
        with atomic_path(final) as tmp, open(tmp, "wb") as f, wds.TarWriter(f) as sink:
            for i in range(len(labels_cpu)):
                buf = io.BytesIO()
                np.save(buf, images_cpu[i].numpy(), allow_pickle=False)
                sink.write({"__key__": f"{self.rank:03d}-{index:06d}-{i:06d}", "img.npy": buf.getvalue(),
                            "cls": str(int(labels_cpu[i])).encode(), "json": meta_bytes})
        entry = {"name": name, "rank": self.rank, "index": index, "num_samples": len(labels_cpu),
                 "epoch": metadata.get("epoch"), "shape": list(images_cpu.shape[1:]), "metadata": metadata}
        try:
            self._write_manifest(self._own_entries + [entry])
        except BaseException:
            final.unlink(missing_ok=True)  # never leave a complete but unlisted shard behind
            raise
        self._own_entries.append(entry)
        self._next_index += 1
        self._add(self.rank, entry, images_cpu if self.cache == "none" else images, labels_cpu)
        return name

    def refresh(self) -> int:
        """Load every shard listed in any rank's manifest that is not cached yet.

        Returns:
            The number of samples added to the cache.

        Raises:
            FileNotFoundError: a listed shard file is missing.
            RuntimeError: a shard's sample count differs from its manifest entry.
        """
        before = self._size
        new = []
        for path in sorted(self.root.glob("manifest-r*.json")):
            data = json.loads(path.read_text())
            new += [(data["rank"], entry) for entry in data["shards"] if (data["rank"], entry["index"]) not in self._cached]
        for rank, entry in self._progress(new, "loading memory-bank shards"):
            self._load_shard(rank, entry)
        return self._size - before

    def _progress(self, items: list, desc: str):
        """``items``, behind a progress bar when there are many shards to load (a resume)."""
        return tqdm(items, desc=desc, unit="shard", leave=False, disable=not self.progress or len(items) < 16)

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform sample with replacement from all cached images.

        Indices are drawn with ``torch.randint`` on ``generator``'s device (CPU if None) over the
        logical cache order (see module docstring), so equal generator states give equal batches,
        whatever the cache. Host syncs: none when the generator and the cache share a device (the
        usual "device" cache with the training generator, or everything on CPU); one when a CUDA
        generator meets a host cache ("cpu", "none", or a "device" cache that fell back to CPU).

        Returns:
            images (B, C, H, W) of ``dtype`` in [0, 1] and labels (B,) int64, both on ``device``.

        Raises:
            RuntimeError: the bank is empty (call write() or refresh() first).
        """
        if self._size == 0:
            raise RuntimeError(f"memory bank at {self.root} is empty: write() or refresh() before sample()")
        device = generator.device if generator is not None else torch.device("cpu")
        logical = torch.randint(self._size, (batch_size,), generator=generator, device=device)
        starts, rows = self._index_map(device)
        shard = torch.searchsorted(starts, logical, right=True) - 1
        physical = rows[shard] + logical - starts[shard]  # on the generator's device
        if physical.device.type == "cpu":  # host -> cache device: a non-blocking copy, no sync
            physical = physical.to(self._storage, non_blocking=True)
        elif physical.device != self._storage:
            # THE one device -> host sync of sample(): a CUDA generator's indices copied to a host
            # cache to gather there ("cpu", "none", or a "device" cache that fell back to CPU).
            # Drawing them on a CPU generator instead would remove it, but would change which images
            # a given generator state picks (resume compares exact batches). Issue 13 (a prefetching
            # sampler) is where this copy moves off the training step.
            physical = physical.to(self._storage)
        if self.cache == "none":  # physical is on the host here: tolist() does not sync
            stored = self._read_images(physical.tolist())
        else:
            stored = self._images[physical]
        images = stored.to(self.device, non_blocking=True).to(dtype) / 255
        return images, self._labels[physical].to(self.device, non_blocking=True)

    def _read_images(self, rows: list[int]) -> torch.Tensor:
        """Read and decode the images of cache rows ``rows`` from their shard files (cache "none")."""

        def read(row: int) -> np.ndarray:
            path, offset, size = self._locations[row]
            with open(path, "rb") as f:
                return np.load(io.BytesIO(os.pread(f.fileno(), size, offset)), allow_pickle=False)

        return torch.from_numpy(np.stack(list(self._pool.map(read, rows))))

    def __len__(self) -> int:
        return self._size

    @property
    def num_shards(self) -> int:
        """Number of shards in the cache."""
        return len(self._cached)

    def state_dict(self) -> dict:
        """``{"manifests": {rank: [entry, ...]}}``: the shards in the cache, by rank and index.

        This rank is always present (possibly with an empty list)."""
        manifests: dict[int, list[dict]] = {self.rank: []}
        for rank, index in sorted(self._cached):
            manifests.setdefault(rank, []).append(dict(self._cached[(rank, index)][0]))
        return {"manifests": manifests}

    def load_state_dict(self, state: dict) -> None:
        """Return to a state_dict() snapshot exactly.

        This rank's shards that are not in the snapshot (written after it) are deleted and its
        manifest is rewritten to the snapshot's list; then the cache is rebuilt from the snapshot's
        shards of all ranks, so len() and sample() behave as at snapshot time.

        Raises:
            FileNotFoundError: a shard listed in the snapshot is missing (nothing is deleted then).
        """
        manifests = {int(rank): list(entries) for rank, entries in state["manifests"].items()}
        for rank, entries in manifests.items():
            for entry in entries:
                path = self.root / entry["name"]
                if not path.is_file():
                    raise FileNotFoundError(f"memory-bank shard of the checkpoint is missing: {path}")
        own = manifests.get(self.rank, [])
        self._clean_own_files({e["name"] for e in own})
        self._own_entries = [dict(e) for e in own]
        self._next_index = max((e["index"] for e in own), default=-1) + 1
        self._write_manifest(self._own_entries)
        self._reset_cache()
        shards = [(rank, dict(entry)) for rank in sorted(manifests) for entry in manifests[rank]]
        for rank, entry in self._progress(shards, "loading memory-bank shards"):
            self._load_shard(rank, entry)
