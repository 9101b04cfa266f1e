"""The suite's records (one JSON line per measurement, in records.jsonl, written at once so that a
later crash or kill keeps it) and the package's one atomic writer. Stdlib only."""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path


def utc_now() -> str:
    """Now, as "YYYY-MM-DD HH:MM:SS UTC"."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def append_record(out: Path, record: dict) -> None:
    """Append one measurement to records.jsonl at once (a later crash or timeout keeps it)."""
    with open(out / "records.jsonl", "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(out: Path) -> list[dict]:
    """Every record of ``out``/records.jsonl so far (a line cut by a kill is skipped)."""
    path = out / "records.jsonl"
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                pass
    return records


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (a reader never sees half a
    file). The package's one atomic writer, and not ``nayer_scale.storage``'s on purpose: the
    orchestrator that rewrites results.json and summary.md runs on the GPU machine before anything
    is installed there, with the stdlib only (nayer_scale is on its children's PYTHONPATH)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
