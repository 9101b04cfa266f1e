"""The memory bank of a run as a ``datasets.DatasetDict`` (``save_to_disk``) with its dataset card.

The rows come from a generator (``datasets.Dataset.from_generator``) that reads one memory-bank shard
at a time (``MemoryBank(cache="none").images_of``) and hands ``datasets`` one image at a time, which
encodes them as PNG and writes them to an arrow file in batches. So the export holds one shard's
decoded images and one writer batch at a time, never the bank: the ``imagenet_r50`` preset's bank is
about 45 GB decoded. The arrow file is built in a temporary folder beside ``OUT`` (same disk), copied
into ``OUT`` by ``save_to_disk`` in one arrow shard per process that wrote any, then removed: the disk
briefly holds the PNG-encoded set twice.

The memory bank is read through ``nayer_scale.memory.MemoryBank``'s public API (``refresh``,
``state_dict()["manifests"]``, ``images_of``, ``labels``) as a reader rank that wrote nothing
(rank = number of writer ranks), so the run folder is not changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..extras import require
from .cards import dataset_card
from .run_folder import load_run

__all__ = ["bank_rows", "export_memory_dataset"]


def _open_bank(root: Path, reader: int):
    from ..memory import MemoryBank

    bank = MemoryBank(root, rank=reader, world_size=reader + 1, cache="none")
    bank.refresh()
    return bank


def bank_rows(root: str, reader: int, entries: tuple[tuple[int, int], ...], channels: int) -> Iterator[dict]:
    """The rows of the memory bank in its logical order (by (rank, index), then position in the shard),
    one shard decoded at a time.

    Args:
        root: the run's ``memory/`` folder; reader: a rank that wrote nothing (the bank is only read).
        entries: the shards as ``(rank, index)`` pairs, sorted; a tuple, since ``from_generator`` splits
            a list argument into one generator call per element (shards of a parallel build), and the
            label offsets run over the whole bank.
        channels: 1 (grey) or 3 (RGB).

    Yields:
        ``{"image": uint8 (H, W) or (H, W, 3) array, "label": int, "process": rank, "batch": index}``.
    """
    bank = _open_bank(Path(root), reader)
    labels = bank.labels
    start = 0
    for rank, index in entries:
        images = bank.images_of(rank, index).numpy()
        for i, image in enumerate(images):
            pixels = image[0] if channels == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
            yield {"image": pixels, "label": int(labels[start + i]), "process": rank, "batch": index}
        start += len(images)
        del images
    bank.close()


def _fingerprint(manifests: dict, names: list[str], channels: int) -> str:
    """A digest of what the rows depend on (the shards listed, the class names, the channels), given to
    ``from_generator`` so that it does not hash the generator and its arguments itself (a pickle of them);
    the build cache is a fresh temporary folder, so it never returns an older build."""
    text = json.dumps(
        {
            "manifests": {str(k): v for k, v in sorted(manifests.items())},
            "names": names,
            "channels": channels,
            "format": 1,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def export_memory_dataset(run_dir: str | Path, out: str | Path, license: str = "other") -> Path:
    """Write the memory bank of ``run_dir`` as a ``datasets.DatasetDict`` (split ``train``: ``image``
    PNG, ``label`` ``ClassLabel``, ``process``, ``batch``) with a dataset card (``README.md``,
    :func:`nayer_scale.export.cards.dataset_card`), in ``out``, in bounded memory (module docstring).

    Args:
        license: the card's hub license id.

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: not a run folder, or a run without memory-bank shards.
    """
    datasets = require("datasets", "hf", "nayer-scale export --format hf")
    run, out = load_run(run_dir), Path(out)
    root = run.path / "memory"
    ranks = sorted(int(p.stem.split("-r")[-1]) for p in root.glob("manifest-r*.json")) if root.is_dir() else []
    if not ranks:
        raise FileNotFoundError(f"{root} holds no memory-bank manifest (manifest-rRRR.json): nothing to export")
    reader = max(ranks) + 1  # a rank that wrote nothing: reading changes no file of the run
    bank = _open_bank(root, reader)
    manifests = bank.state_dict()["manifests"]
    bank.close()
    entries = tuple(sorted((int(rank), int(e["index"])) for rank, es in manifests.items() for e in es))
    if not entries:
        raise FileNotFoundError(f"{root} lists no shard: nothing to export")
    names, channels = run.class_names(), int(run.teacher["in_channels"])
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "process": datasets.Value("int32"),
            "batch": datasets.Value("int32"),
        }
    )
    processes = len({rank for rank, _ in entries})
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix=".export-cache-", dir=out.parent))
    try:
        ds = datasets.Dataset.from_generator(
            bank_rows,
            features=features,
            cache_dir=str(cache),
            fingerprint=_fingerprint(manifests, names, channels),
            gen_kwargs={"root": str(root), "reader": reader, "entries": entries, "channels": channels},
        )
        datasets.DatasetDict({"train": ds}).save_to_disk(str(out), num_shards={"train": min(processes, len(ds))})
        rows, info = len(ds), ds.info
        del ds
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    from ..storage import atomic_write_text

    side = int(run.teacher["image_size"])
    card = dataset_card(
        run, rows=rows, class_names=names, processes=processes, image_size=side, info=info, license=license
    )
    atomic_write_text(out / "README.md", str(card))
    return out
