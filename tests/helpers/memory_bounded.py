"""Helpers shared by tests/unit/test_memory_bounded.py and tests/integration/test_memory_bounded_runs.py."""

from __future__ import annotations

import json
from pathlib import Path


def names(root: Path, key: str = "shards", rank: int = 0) -> list[str]:
    return [e["name"] for e in json.loads((root / f"manifest-r{rank:03d}.json").read_text())[key]]


# ------------------------------------------------------------------------------------------------
# Damaged shards and manifests


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:700])
