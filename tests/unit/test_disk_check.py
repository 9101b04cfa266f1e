"""The start-up disk check: its estimate bounds what a real run writes, and a file system with less
free space than that gets one warning line before any work (the run still goes).

The runs of this topic (distillations, subprocesses) are in tests/integration/test_disk_check_runs.py."""

from __future__ import annotations

import shutil

from conftest import tiny_config
from nayer_scale.models import build_model
from nayer_scale.training.disk_check import DiskEstimate, check_free_space, estimate_run_bytes, state_nbytes


def test_a_resumed_run_counts_what_it_already_wrote(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "memory").mkdir(parents=True)
    (run_dir / "memory" / "shard.tar").write_bytes(b"\0" * 5000)
    free = shutil.disk_usage(tmp_path).free
    assert check_free_space(run_dir, DiskEstimate(memory_bank=free + 4000, checkpoints=0, other=0)) is None
    assert "may run out" in check_free_space(run_dir, DiskEstimate(memory_bank=free + 10**9, checkpoints=0, other=0))
    # a run folder that does not exist yet: the nearest existing parent's file system
    assert check_free_space(tmp_path / "a" / "b", DiskEstimate(0, 0, 0)) is None


def test_bounded_memory_bank_and_state_sizes(tmp_path, teacher_file, fake_test_split, lte_cache):
    cfg = tiny_config(tmp_path / "run", teacher_file, fake_test_split, lte_cache)
    student = build_model("resnet8", num_classes=10, in_channels=1)
    cfg.run.epochs = 10
    unbounded = estimate_run_bytes(cfg, 2, student, {})
    cfg.memory.max_images = cfg.synthesis.batch_size * 2
    bounded = estimate_run_bytes(cfg, 2, student, {})
    assert bounded.memory_bank < unbounded.memory_bank and bounded.checkpoints == unbounded.checkpoints
    import torch

    assert state_nbytes({"a": torch.zeros(10), "b": [torch.zeros(2, dtype=torch.float64)], "c": 3}) == 10 * 4 + 2 * 8
