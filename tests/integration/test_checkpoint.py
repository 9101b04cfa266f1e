"""Checkpoints: no pickle anywhere (a planted one is refused, never executed), resume refuses a
changed config field unless it may change between sessions, config.json keeps every session."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from conftest import tiny_config
from nayer_scale.config import DEMO_TEACHER, ConfigError
from nayer_scale.recipes import get_preset
from nayer_scale.trainer import NayerTrainer


class _Exploit:
    """Unpickling this creates ``marker``: what a tampered checkpoint on shared storage could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, teacher_file, fake_test_split, lte_cache):
    cfg = tiny_config(tmp_path_factory.mktemp("ckpt") / "run", teacher_file, fake_test_split, lte_cache)
    NayerTrainer(cfg).fit()
    return cfg


def _copy_run(cfg, tmp_path: Path):
    run_dir = tmp_path / "copy"
    shutil.copytree(cfg.run.run_dir, run_dir)
    cfg = tiny_config(run_dir, Path(cfg.teacher.weights), Path(cfg.eval.root), Path(cfg.lte.cache_dir))
    cfg.run.resume = True
    return cfg, run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text()


def test_checkpoints_hold_no_pickle(finished):
    latest = Path(finished.run.run_dir) / "checkpoints" / "epoch-0002"
    suffixes = {p.suffix for p in latest.iterdir()}
    assert suffixes == {".json", ".safetensors"}, suffixes


def test_planted_pickle_is_refused_not_executed(finished, tmp_path):
    cfg, latest = _copy_run(finished, tmp_path)
    marker = tmp_path / "pwned"
    # an old-format checkpoint: pickles only, no meta.json
    for f in latest.iterdir():
        f.unlink()
    for name in ("shared.pt", "process-000.pt"):
        (latest / name).write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ConfigError, match="never loaded"):
        NayerTrainer(cfg)
    assert not marker.exists()


def test_pickle_beside_a_valid_checkpoint_is_ignored(finished, tmp_path):
    cfg, latest = _copy_run(finished, tmp_path)
    marker = tmp_path / "pwned"
    (latest / "process-000.pt").write_bytes(pickle.dumps(_Exploit(marker)))
    trainer = NayerTrainer(cfg)
    assert trainer.start_epoch == 3 and not marker.exists()


def test_resume_refuses_a_changed_field_and_keeps_the_record(finished, tmp_path):
    cfg, _ = _copy_run(finished, tmp_path)
    record = (Path(cfg.run.run_dir) / "config.json").read_text()
    cfg.distill.lr = 0.05
    with pytest.raises(ConfigError, match=r"distill\.lr.*0\.1.*0\.05"):
        NayerTrainer(cfg)
    assert (Path(cfg.run.run_dir) / "config.json").read_text() == record  # what ran is still on record


def test_resume_extends_epochs_and_records_each_session(finished, tmp_path):
    cfg, _ = _copy_run(finished, tmp_path)
    cfg.run.epochs = 4
    summary = NayerTrainer(cfg).fit()
    assert summary["epochs"] == 4
    lines = (Path(cfg.run.run_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 2, 3]
    sessions = json.loads((Path(cfg.run.run_dir) / "config.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[0]["config"]["run"]["epochs"] == 3
    assert any("run.epochs" in change for change in sessions[1]["changed_since_checkpoint"])
    assert (Path(cfg.run.run_dir) / "run.yaml").is_file()


def test_class_names_must_match_the_teacher_file(tmp_path):
    cfg = get_preset("fashion_mnist")
    cfg.teacher.weights, cfg.teacher.class_names = DEMO_TEACHER, "cifar10"
    cfg.run.run_dir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"airplane.*T-shirt|T-shirt.*airplane"):
        NayerTrainer(cfg)
    assert not (tmp_path / "run").exists()
