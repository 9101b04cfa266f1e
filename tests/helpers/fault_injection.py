"""Helpers shared by tests/unit/test_fault_injection.py and tests/integration/test_fault_injection_runs.py."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from PIL import Image
from safetensors import safe_open

from nayer_scale.memory import shards
from nayer_scale.storage import load_state


def _safetensors(path: Path) -> None:
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            f.get_tensor(key)


def _jsonl(path: Path) -> None:
    text = path.read_text()
    assert not text or text.endswith("\n"), f"{path} ends in half a line"
    for line in text.splitlines():
        json.loads(line)


CHECKS = {
    ".json": lambda p: json.loads(p.read_text()),
    ".jsonl": _jsonl,
    ".yaml": lambda p: yaml.safe_load(p.read_text()),
    ".png": lambda p: Image.open(p).verify(),
    ".safetensors": _safetensors,
}


def assert_complete_or_absent(*folders: Path, temporary_files: bool) -> None:
    """Every file under ``folders`` is complete: JSON / JSON lines / YAML parse, PNGs and safetensors
    files decode, each shard matches its manifest entry (size, SHA-256) and none is unlisted, each
    checkpoint's state files load as a pair, ``latest`` names a checkpoint. ``*.tmp`` files (and
    folders) are allowed only where ``temporary_files`` (a killed process cannot remove them;
    readers never open them); they are not checked."""
    files = [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]
    leftovers = [p for p in files if any(part.endswith(".tmp") for part in p.parts)]
    assert temporary_files or not leftovers, f"partial files left: {leftovers}"
    for path in set(files) - set(leftovers):
        if path.suffix in CHECKS:
            try:
                CHECKS[path.suffix](path)
            except Exception as err:
                raise AssertionError(f"{path} is not complete: {err!r}") from err
    for folder in folders:
        memory = folder / "memory"
        if (memory / "manifest-r000.json").is_file():
            manifest = json.loads((memory / "manifest-r000.json").read_text())
            for entry in manifest["shards"] + manifest["retired"]:
                if entry in manifest["shards"] or (memory / entry["name"]).exists():
                    shards.verify(memory / entry["name"], entry)
            listed = {e["name"] for e in manifest["shards"] + manifest["retired"]}
            assert {p.name for p in memory.glob("*.tar")} <= listed, "a shard on disk is not in the manifest"
        checkpoints = folder / "checkpoints"
        for ckpt in (c for c in checkpoints.glob("*") if c.is_dir() and not c.name.endswith(".tmp")):
            for stem in {p.with_suffix("") for p in ckpt.glob("*.json") if p.name != "meta.json"}:
                load_state(stem)
        if (checkpoints / "latest").is_file():
            assert (checkpoints / (checkpoints / "latest").read_text().strip() / "meta.json").is_file()
