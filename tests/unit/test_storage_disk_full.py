"""A full disk while writing: one clear error naming the file and the free space, no partial file,
the previous content intact (nayer_scale.storage)."""

from __future__ import annotations

import builtins
import errno
import os

import pytest

from nayer_scale.storage import DiskFullError, append_line, atomic_write_json, atomic_write_text


def _fail_writes(monkeypatch, code=errno.ENOSPC, after: int = 0):
    """Make every file write fail with ``code`` once ``after`` bytes were written by this write."""
    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if any(m in mode for m in "wa"):
            write = f.write

            def failing(data):
                if after:
                    write(data[:after])
                    f.flush()
                raise OSError(code, os.strerror(code))

            f.write = failing
        return f

    monkeypatch.setattr(builtins, "open", fake_open)


@pytest.mark.parametrize("code,what", [(errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "quota exceeded")])
def test_an_atomic_write_on_a_full_disk_keeps_the_old_content(tmp_path, monkeypatch, code, what):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"old": 1})
    _fail_writes(monkeypatch, code, after=3)
    with pytest.raises(DiskFullError) as err:
        atomic_write_text(target, "x" * 100)
    message = str(err.value)
    assert what in message and str(target) in message and "free of" in message and "\n" not in message
    assert err.value.errno == code and isinstance(err.value, OSError)
    monkeypatch.undo()
    assert target.read_text() == '{\n  "old": 1\n}' and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_append_line_never_leaves_half_a_line(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    append_line(log, '{"epoch": 0}')
    _fail_writes(monkeypatch, after=5)
    with pytest.raises(DiskFullError, match="metrics.jsonl"):
        append_line(log, '{"epoch": 1, "long": "' + "y" * 100 + '"}')
    monkeypatch.undo()
    assert log.read_text() == '{"epoch": 0}\n'


def test_other_write_errors_stay_what_they_are(tmp_path, monkeypatch):
    _fail_writes(monkeypatch, errno.EIO)
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "x.txt", "data")
    assert not isinstance(err.value, DiskFullError) and err.value.errno == errno.EIO
