"""Precision by capability (every combination, with the capability injected, not read off the CPU the
test runs on), and fp16 with loss scaling: finite losses, scalers that step, exact resume.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_precision.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from nayer_scale.storage import load_state
from nayer_scale.trainer import NayerTrainer

FP16 = ("run.mixed_precision=fp16", "synthesis.num_generator_steps=3")


@pytest.fixture
def fp16_cfg(tmp_path, teacher_file, fake_test_split, lte_cache):
    def make(name, method="nayer"):
        cfg = tiny_config(tmp_path / name, teacher_file, fake_test_split, lte_cache, *FP16)
        if method != "nayer":
            cfg.synthesis.method = method
            cfg.synthesis.noise_dim = 16
        return cfg

    return make


@pytest.mark.parametrize("method", ["nayer", "deepinversion", "fast"])
def test_fp16_run_scales_losses_and_steps(fp16_cfg, method, one_thread):
    trainer = NayerTrainer(fp16_cfg("run", method))
    assert trainer.engine.scaler.is_enabled() and trainer.synthesizer.scaler.is_enabled()
    summary = trainer.fit()
    assert summary["precision"]["mixed_precision"] == "fp16"
    records = [json.loads(x) for x in open(Path(trainer.run_dir, "metrics.jsonl"))]
    for r in records:
        assert all(torch.isfinite(torch.tensor(r[k])) for k in ("synth_loss", "synth_bn", "synth_ce"))
    assert torch.isfinite(torch.tensor(records[-1]["kd"]))
    # each scaler took steps: its growth tracker counts the unskipped ones since the last change of
    # scale, and a skipped step halves the scale; either way its state moved
    for scaler in (trainer.synthesizer.scaler, trainer.engine.scaler):
        state = scaler.state_dict()
        assert state["_growth_tracker"] > 0 or state["scale"] < 65536.0, state
    config = json.loads(Path(trainer.run_dir, "config.json").read_text())
    assert config["resolved"]["precision"]["mixed_precision"] == "fp16"


def test_fp16_resume_is_exact_and_restores_the_scalers(crash_resume, one_thread):
    def before_fit(resumed):
        checkpoint = resumed.checkpoints.latest()
        shared = load_state(checkpoint / "shared")
        own = load_state(checkpoint / "process-000")
        assert shared["student"]["scaler"] == resumed.engine.scaler.state_dict() != {}
        assert own["synthesizer"]["scaler"] == resumed.synthesizer.scaler.state_dict() != {}

    crash_resume(*FP16, before_fit=before_fit)  # the resumed student is bit-identical
