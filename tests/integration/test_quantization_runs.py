"""Data-free quantization (nayer_scale.quantization): fake quantization against hand-computed
integers, the straight-through gradients, the 8-bit first / last layers, BatchNorm folding, PTQ
calibration statistics, the integer export round trip, a tiny W4A4 run through launch/distill.py
and an exact resume that includes the quantizer state.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_quantization.py."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_run_overrides
from nayer_scale.config import ConfigError
from nayer_scale.models import build_model
from nayer_scale.quantization import load_quantized, parse_quantization, quantized_copy

ROOT = Path(__file__).resolve().parents[2]


QUANT = (
    "teacher.arch=resnet8",
    "student.arch=resnet8",
    "student.quantization.weight_bits=4",
    "student.quantization.activation_bits=4",
    "distill.lr=0.01",
)


def test_tiny_w4a4_run_through_launch_distill(tmp_path, teacher_file, fake_test_split, lte_cache):
    run_dir = tmp_path / "w4a4"
    args = tiny_run_overrides(
        run_dir,
        teacher_file,
        fake_test_split,
        lte_cache,
        "student.quantization=w4a4",
        "distill.lr=0.01",
        "synthesis.generator_life_epochs=10",  # the preset's: no generator reset in this run
        "run.cpu_threads=1",
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "launch" / "distill.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    loaded, meta = load_quantized(run_dir / "student_quantized.safetensors")
    assert meta["quantization"] == "w4a4" and json.loads(meta["layer_bits"])["conv1"] == [8, 8]
    # the export reproduces the run's final top-1 on the (fake) test split
    from nayer_scale.data.fashion_mnist import load_fashion_mnist

    images, labels = load_fashion_mnist("test", fake_test_split)
    x = (images.float() / 255 - 0.2860) / 0.3530
    with torch.no_grad():
        exported_logits = loaded(x.reshape(-1, 1, 28, 28))
    top1 = (exported_logits.argmax(1) == labels).sum().item() / len(labels)
    assert top1 == pytest.approx(summary["student_top1"], abs=1e-9)
    # and the logits of the trained fake-quantized student itself
    trained = load_file(run_dir / "student.safetensors")
    assert trained["conv1.input_fake_quant.calibrated"].item() == 1  # ranges observed during KD
    student = quantized_copy(build_model("resnet8", 10, 1).eval(), parse_quantization("w4a4"))
    student.load_state_dict(trained)
    with torch.no_grad():
        torch.testing.assert_close(exported_logits, student.eval()(x.reshape(-1, 1, 28, 28)), rtol=0, atol=1e-5)


def test_resume_is_exact_with_quantizer_state(crash_resume):
    from nayer_scale.trainer import NayerTrainer

    def after_crash(cfg):
        changed = copy.deepcopy(cfg)
        changed.run.resume, changed.student.quantization = True, "w8a8"
        with pytest.raises(ConfigError, match="student.quantization"):
            NayerTrainer(changed)  # the quantization may not change between sessions

    run = crash_resume(*QUANT, after_crash=after_crash)  # the resumed student is bit-identical
    assert any(k.endswith("input_fake_quant.activation_post_process.max_val") for k in run.straight)
