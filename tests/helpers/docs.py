"""Helpers shared by tests/unit/test_docs.py and tests/integration/test_docs_runs.py."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _nav_pages(nav) -> list[str]:
    """Every page path of a mkdocs ``nav`` (nested lists of {title: path or list})."""
    pages = []
    for item in nav:
        values = item.values() if isinstance(item, dict) else [item]
        for value in values:
            pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def _mkdocs_config() -> dict:
    # mkdocs.yml may hold !!python/name tags in other projects; this one is plain YAML
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())
