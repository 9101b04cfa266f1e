"""A full disk, or a kill, in the middle of any writer of a run: the run stops with one line naming
the file, every output left is complete (and verifies) or absent, and running the same command again
finishes the run with a student bit-identical to an uninterrupted run's.

The faults (tests/fault_worker.py) cut a write half way: half of its bytes are on disk, then
``OSError(ENOSPC)`` (nayer_scale.storage turns it into DiskFullError, which ``nayer-scale distill``
reports as one line) or SIGKILL. The runs are ``nayer-scale distill`` commands (``cli.main``).

The runs of this topic (distillations, subprocesses) are in tests/integration/test_fault_injection_runs.py."""

from __future__ import annotations

import json

import pytest

from helpers.fault_injection import assert_complete_or_absent
from nayer_scale.memory import shards


def test_the_completeness_check_finds_half_written_files(tmp_path):
    memory = tmp_path / "memory"
    memory.mkdir()
    (memory / "shard-r000-000000.tar").write_bytes(b"0123")
    entry = {"name": "shard-r000-000000.tar", **shards.describe(b"0123")}
    (memory / "manifest-r000.json").write_text(json.dumps({"shards": [entry], "retired": []}))
    assert_complete_or_absent(tmp_path, temporary_files=False)
    for damage, expected in [
        (lambda: (memory / "shard-r000-000000.tar").write_bytes(b"01"), "bytes on disk"),
        (lambda: (memory / "shard-r000-000001.tar").write_bytes(b"x"), "not in the manifest"),
        (lambda: (tmp_path / "summary.json").write_text('{"a": 1'), "summary.json"),
        (lambda: (tmp_path / "metrics.jsonl").write_text('{"epoch": 0}\n{"ep'), "metrics.jsonl"),
        (lambda: (tmp_path / "x.json.1.abc.tmp").write_text("{"), "partial files left"),
    ]:
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        damage()
        with pytest.raises((AssertionError, shards.ShardError), match=expected):
            assert_complete_or_absent(tmp_path, temporary_files=False)
        for p in tmp_path.rglob("*"):
            if p.is_file() and p not in before:
                p.unlink()
        for p, data in before.items():
            p.write_bytes(data)
