"""A tiny NAYER run end to end on CPU, exact resume after a crash, the errors raised before any
work, and the guarantee that distillation never reads the training split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from nayer_scale.config import ConfigError
from nayer_scale.data import fashion_mnist
from nayer_scale.models.io import TeacherLoadError
from nayer_scale.models.sources import build_teacher
from nayer_scale.trainer import NayerTrainer


def test_tiny_run_writes_everything_and_never_reads_training_data(make_cfg, monkeypatch):
    opened = []
    real_read = fashion_mnist._read_idx
    monkeypatch.setattr(
        fashion_mnist, "_read_idx", lambda path, offset: opened.append(str(path)) or real_read(path, offset)
    )
    cfg = make_cfg()
    summary = NayerTrainer(cfg).fit()
    run_dir = cfg.run.run_dir
    assert opened and all("t10k" in p for p in opened), opened  # test split only
    for key in ("teacher_top1", "student_top1", "wall_s", "synthesis_s", "distillation_s", "evaluation_s"):
        assert key in summary
    assert 0.0 <= summary["student_top1"] <= 1.0
    assert json.loads(open(f"{run_dir}/summary.json").read())["student_top1"] == summary["student_top1"]
    lines = [json.loads(x) for x in open(f"{run_dir}/metrics.jsonl")]
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    assert lines[0]["warmup"] and "kd" not in lines[0] and "kd" in lines[2]
    for epoch in range(3):
        assert Path(run_dir, "samples", f"epoch-{epoch:04d}.png").is_file()
    # one shard per epoch, 24 images each
    assert summary["memory_size"] == 3 * 24
    # the exported student loads as a model of its own
    student = build_teacher("resnet8", f"{run_dir}/student.safetensors", num_classes=10, in_channels=1)
    assert student(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_resume_after_crash_mid_epoch_is_exact(crash_resume):
    def after_crash(cfg):
        # killed in epoch 2: its memory shard is already written, its checkpoint is not
        shards = sorted(p.name for p in (Path(cfg.run.run_dir) / "memory").glob("*.tar"))
        assert len(shards) == 3  # the un-checkpointed epoch-2 shard is on disk before resume
        with pytest.raises(ConfigError, match="resume"):
            NayerTrainer(cfg)  # an existing run is never silently overwritten

    def before_fit(resumed):
        assert resumed.start_epoch == 2 and len(resumed.memory) == 2 * 24  # epoch-2 shard discarded

    run = crash_resume(after_crash=after_crash, before_fit=before_fit)  # the students are bit-identical
    cfg, summary = run.config, run.summary
    assert summary["memory_size"] == run.straight_summary["memory_size"]
    lines = [json.loads(x) for x in open(f"{cfg.run.run_dir}/metrics.jsonl")]
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    # time accounting spans both sessions: the phases of epochs 0-1 are counted once, not lost
    phases = sum(v for k, v in summary.items() if k.endswith("_s") and k != "wall_s")
    assert phases <= summary["wall_s"] and summary["synthesis_s"] > 0
    # running the same command on a finished run reports it and changes nothing
    assert NayerTrainer(cfg).fit() == summary
    torch.testing.assert_close(
        load_file(f"{cfg.run.run_dir}/student.safetensors")["conv1.weight"], run.student["conv1.weight"], rtol=0, atol=0
    )


def test_errors_before_any_work(make_cfg, tmp_path):
    cfg = make_cfg("missing", f"teacher.weights={tmp_path / 'nope.safetensors'}")
    with pytest.raises(TeacherLoadError, match="does not exist"):
        NayerTrainer(cfg)
    assert not (tmp_path / "missing" / "memory").exists()

    cfg = make_cfg("classes", "teacher.class_names=cifar100")
    with pytest.raises(TeacherLoadError, match="100"):
        NayerTrainer(cfg)

    cfg = make_cfg("noeval", f"eval.root={tmp_path / 'empty'}")
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST"):
        NayerTrainer(cfg)

    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    cfg = make_cfg("names", f"teacher.class_names={names}")
    with pytest.raises(TeacherLoadError):
        NayerTrainer(cfg)  # 2 class names for a 10-way teacher


def test_resume_before_first_checkpoint_starts_over(crash_resume):
    def crash(monkeypatch):
        real_save = NayerTrainer.save_checkpoint

        def crashing(self, epoch):
            raise KeyboardInterrupt("killed before the first checkpoint")

        monkeypatch.setattr(NayerTrainer, "save_checkpoint", crashing)
        return lambda: monkeypatch.setattr(NayerTrainer, "save_checkpoint", real_save)

    def after_crash(cfg):
        assert len(list((Path(cfg.run.run_dir) / "memory").glob("*.tar"))) == 1

    def before_fit(trainer):
        assert trainer.start_epoch == 0 and len(trainer.memory) == 0  # the orphan shard is dropped

    run = crash_resume(crash=crash, after_crash=after_crash, before_fit=before_fit)  # bit-identical students
    assert run.summary["memory_size"] == run.straight_summary["memory_size"]
