"""The start-up disk check: its estimate bounds what a real run writes, and a file system with less
free space than that gets one warning line before any work (the run still goes).

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_disk_check.py."""

from __future__ import annotations

import shutil
from collections import namedtuple

from conftest import tiny_config
from nayer_scale.trainer import NayerTrainer
from nayer_scale.training.disk_check import estimate_run_bytes


def _written(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_estimate_bounds_a_real_run_and_a_short_disk_is_warned(
    tmp_path, teacher_file, fake_test_split, lte_cache, monkeypatch, capsys
):
    cfg = tiny_config(tmp_path / "run", teacher_file, fake_test_split, lte_cache)
    trainer = NayerTrainer(cfg)
    assert "may run out of disk space" not in capsys.readouterr().out  # this machine has the space
    estimate = estimate_run_bytes(cfg, 1, trainer.engine.unwrapped, trainer.synthesizer.state_dict())
    trainer.fit()
    written = _written(tmp_path / "run")
    # an upper bound, and not a wild one (within 20x: checkpoints and grids are counted generously)
    assert written <= estimate.total <= 20 * written, (written, estimate)

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    NayerTrainer(tiny_config(tmp_path / "run2", teacher_file, fake_test_split, lte_cache)).close()
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "may run out of disk space" in line)
    assert str(tmp_path / "run2") in line and "memory.max_images" in line and "GiB free" in line
