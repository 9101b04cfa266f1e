"""One process's manifest of the memory bank: read, verify, rebuild, retire.

Each rank ``r`` lists its shards in ``manifest-r{r:03d}.json``::

    {"format": 2, "rank": r, "next_index": n,
     "shards": [entry, ...],     live, oldest first
     "retired": [entry, ...]}    out of the bank, file kept while a kept checkpoint lists it

An entry is ``{"name", "rank", "index", "num_samples", "epoch", "shape", "metadata", "bytes",
"sha256", "encoding"[, "slot"]}``. Every rewrite is atomic (``nayer_scale.storage``): a new shard
and the shards it retires change the manifest in one rewrite (``Manifest.commit``), a retired
shard's file is deleted only after the rewrite that unlists it (``Manifest.release``), and a
manifest that does not parse is rebuilt from this rank's shard files that decode completely
(``Manifest`` at construction). Format 1 manifests (no ``retired`` / ``next_index``) are read as
format 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..storage import atomic_path, atomic_write_json
from . import shards
from .shards import ShardError

FORMAT = 2
SHARD_PATTERN = re.compile(r"shard-r\d{3}-\d{6}\.tar")

__all__ = ["FORMAT", "SHARD_PATTERN", "Manifest", "manifest_path", "read_listed", "read_manifest", "shard_name"]

Report = Callable[[str, str, str], None]  # (event, file name, reason): warn and keep an event


def shard_name(rank: int, index: int) -> str:
    """File name of shard ``index`` of process ``rank``: ``shard-r{rank:03d}-{index:06d}.tar``."""
    return f"shard-r{rank:03d}-{index:06d}.tar"


def manifest_path(root: Path, rank: int) -> Path:
    """``root / manifest-r{rank:03d}.json``."""
    return root / f"manifest-r{rank:03d}.json"


def read_manifest(root: Path, rank: int) -> dict:
    """``rank``'s manifest as {"shards", "retired", "next_index"} (format 1 upgraded in memory; no
    file: an empty manifest).

    Raises:
        ValueError: the file is not valid JSON or lacks the manifest's fields (damaged).
        RuntimeError: an unsupported format number.
    """
    path = manifest_path(root, rank)
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


def read_listed(root: Path, entry: dict, images: bool = True) -> tuple[np.ndarray | None, np.ndarray, list]:
    """Verify a listed shard against its manifest ``entry`` (size, SHA-256, sample count, image
    shape) and read it.

    Args:
        root: the bank's folder. entry: the shard's manifest entry. images: decode the images.

    Returns:
        (images (N, C, H, W) uint8 or None when not ``images``, labels (N,), the (offset, size,
        suffix) of every image member).

    Raises:
        ShardError: the file is missing, has another size or checksum, or does not match ``entry``.
    """
    name = entry["name"]
    data = shards.verify(root / name, entry)
    decoded, labels, where, _ = shards.read_shard(data, name, entry["shape"][0], images=images)
    if len(labels) != entry["num_samples"]:
        raise ShardError(name, f"holds {len(labels)} samples, the manifest lists {entry['num_samples']}")
    if decoded is not None and list(decoded.shape[1:]) != list(entry["shape"]):
        raise ShardError(name, f"images of shape {list(decoded.shape[1:])}, the manifest lists {entry['shape']}")
    return decoded, labels, where


class Manifest:
    """This rank's manifest, held in memory and rewritten atomically on every change.

    At construction it is read (a damaged one is rebuilt from this rank's shards that decode,
    keeping the newest up to ``cap`` images, and reported), and this rank's leftovers of a crash
    (``.tmp`` files, shards listed neither as live nor as retired) are deleted.

    Args:
        root: the bank's folder.
        rank: this process.
        cap: images this process may keep (0 = unbounded), for a rebuild.
        report: called as ``report(event, file_name, reason)`` for a rebuilt or unreadable manifest.

    Attributes:
        live: entries in the bank, oldest first. retired: entries out of the bank whose files are
            kept. next_index: the index of this rank's next shard.
    """

    def __init__(self, root: Path, rank: int, cap: int, report: Report) -> None:
        self.root, self.rank, self.cap, self._report = root, rank, cap, report
        try:
            own = read_manifest(root, rank)
        except ValueError as err:
            own = self._rebuild(str(err))
        self.live: list[dict] = own["shards"]
        self.retired: list[dict] = own["retired"]
        self.next_index: int = own["next_index"]
        self.clean_files({e["name"] for e in self.live + self.retired})

    @property
    def path(self) -> Path:
        """This rank's manifest file."""
        return manifest_path(self.root, self.rank)

    def _rebuild(self, why: str) -> dict:
        """Rebuild this rank's manifest from its shard files that decode completely (newest kept
        up to the cap), write it, and report it."""
        entries = []
        for path in sorted(self.root.glob(f"shard-r{self.rank:03d}-*.tar")):
            entry = self._entry_of_file(path)
            if entry is not None:
                entries.append(entry)
        live, total = [], 0
        for e in reversed(entries):  # the newest that fit, as FIFO would have kept
            if self.cap and total + e["num_samples"] > self.cap:
                break
            live.insert(0, e)
            total += e["num_samples"]
        self.live, self.retired = live, []
        self.next_index = max((e["index"] for e in entries), default=-1) + 1
        self._report(
            "manifest_rebuilt",
            self.path.name,
            f"{why}; rebuilt from the {len(live)} shards of rank {self.rank} that decode",
        )
        self.write()
        return {"shards": self.live, "retired": [], "next_index": self.next_index}

    def _entry_of_file(self, path: Path) -> dict | None:
        """The manifest entry of a shard file whose every image decodes, else None."""
        data = path.read_bytes()
        try:
            _, labels, where, meta = shards.read_shard(data, path.name, images=False)
            if not where:
                return None
            meta = dict(meta or {})
            shape = meta.pop("image_shape", None) or shards.first_image_shape(data, where, path.name)
            shards.read_shard(data, path.name, shape[0])  # every image decodes
        except ShardError:
            return None
        return {
            "name": path.name,
            "rank": self.rank,
            "index": int(path.stem.split("-")[-1]),
            "num_samples": len(labels),
            "epoch": meta.get("epoch"),
            "shape": shape,
            "metadata": meta,
            "encoding": shards.encoding_of(where[0][2]),
            **shards.describe(data),
        }

    def write_shard(
        self,
        index: int,
        images: torch.Tensor,
        labels: torch.Tensor,
        metadata: dict,
        encoding: str,
        quality: int | None,
        slot: int | None,
    ) -> tuple[dict, bytes, torch.Tensor]:
        """Encode shard ``index`` of this rank and write its file atomically (not listed yet: see
        ``commit``).

        Args:
            images: (N, C, H, W) uint8 CPU. labels: (N,) int64 CPU. metadata: stored with every
                sample and in the entry. encoding, quality: ``nayer_scale.memory.shards``.
            slot: the reservoir slot, or None.

        Returns:
            (its manifest entry, its bytes, the images every reader and a resume will decode: the
            given ones for a lossless encoding).
        """
        name = shard_name(self.rank, index)
        data = shards.shard_bytes(images, labels, f"{self.rank:03d}-{index:06d}", metadata, encoding, quality)
        entry = {
            "name": name,
            "rank": self.rank,
            "index": index,
            "num_samples": images.shape[0],
            "epoch": metadata.get("epoch"),
            "shape": list(images.shape[1:]),
            "metadata": metadata,
            "encoding": encoding,
            **shards.describe(data),
        }
        if slot is not None:
            entry["slot"] = slot
        with atomic_path(self.root / name) as tmp:
            tmp.write_bytes(data)
        if encoding not in shards.LOSSLESS:  # cache what every reader (and a resume) will decode
            images = torch.from_numpy(shards.read_shard(data, name, images.shape[1])[0])
        return entry, data, images

    def write(self) -> None:
        """Rewrite this rank's manifest file atomically."""
        atomic_write_json(
            self.path,
            {
                "format": FORMAT,
                "rank": self.rank,
                "next_index": self.next_index,
                "shards": self.live,
                "retired": self.retired,
            },
            indent=1,
        )

    def clean_files(self, keep: set[str]) -> None:
        """Delete this rank's ``.tmp`` files and shards whose names are not in ``keep``."""
        prefix = f"shard-r{self.rank:03d}-"
        manifest = self.path.name + "."
        for path in self.root.iterdir():
            name = path.name
            stale_tmp = name.endswith(".tmp") and (name.startswith(prefix) or name.startswith(manifest))
            unlisted = name.startswith(prefix) and name.endswith(".tar") and name not in keep
            if stale_tmp or unlisted:
                path.unlink(missing_ok=True)

    def commit(self, index: int, entry: dict | None, retire: list[dict]) -> None:
        """Shard ``index`` is done: list ``entry`` (None: not admitted) and move ``retire`` from the
        live to the retired entries, in one atomic rewrite. If the rewrite fails the manifest
        stays as it was and the new shard's file is deleted (never a complete but unlisted shard)."""
        gone = {e["name"] for e in retire}
        before = (self.live, self.retired, self.next_index)
        self.live = [e for e in self.live if e["name"] not in gone] + ([entry] if entry else [])
        self.retired = self.retired + retire
        self.next_index = index + 1
        try:
            self.write()
        except BaseException:
            self.live, self.retired, self.next_index = before
            if entry:
                (self.root / entry["name"]).unlink(missing_ok=True)
            raise

    def release(self, referenced: Iterable[str]) -> list[str]:
        """Delete the retired shard files whose names are not in ``referenced``: first unlist them,
        then delete (a crash in between leaves unlisted files, deleted at the next start).

        Returns:
            The names deleted.
        """
        keep = set(referenced)
        gone = [e for e in self.retired if e["name"] not in keep]
        if not gone:
            return []
        self.retired = [e for e in self.retired if e["name"] in keep]
        self.write()
        for e in gone:
            (self.root / e["name"]).unlink(missing_ok=True)
        return [e["name"] for e in gone]

    def restore(self, live: list[dict], next_index: int) -> None:
        """Return to a snapshot's ``live`` entries and counter: shards retired since are live
        again, shards made after it are deleted; older entries not in ``live`` stay retired."""
        names = {e["name"] for e in live}
        older = [e for e in self.live + self.retired if e["name"] not in names and e["index"] < next_index]
        self.live, self.retired, self.next_index = live, older, next_index
        self.write()
        self.clean_files(names | {e["name"] for e in older})

    def unlist(self, name: str) -> None:
        """Remove a live shard (missing or damaged) from the manifest."""
        self.live = [e for e in self.live if e["name"] != name]
        self.write()

    def listings(self) -> Iterator[tuple[int, list[dict]]]:
        """(rank, live entries) of every rank with a manifest in ``root``, by rank; this rank's from
        memory. A manifest of another rank that does not parse is reported and skipped."""
        for path in sorted(self.root.glob("manifest-r*.json")):
            rank = int(path.stem.split("-r")[-1])
            if rank == self.rank:
                yield rank, self.live
                continue
            try:
                listed = read_manifest(self.root, rank)["shards"]
            except ValueError as err:
                self._report("manifest_unreadable", path.name, f"{err}; keeping this rank's shards as cached")
                continue
            yield rank, listed
