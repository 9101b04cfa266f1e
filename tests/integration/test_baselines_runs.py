"""The DeepInversion and Fast baselines in the shared trainer, the time accounting, and the
GPU-hour comparison benchmark (benchmarks/gpu_hours.py) on a tiny budget.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_baselines.py."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_hours
from conftest import tiny_config, tiny_set_args
from nayer_scale.config import ConfigError
from nayer_scale.synthesis import DeepInversionSynthesizer, FastSynthesizer
from nayer_scale.trainer import NayerTrainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method, cls", [("deepinversion", DeepInversionSynthesizer), ("fast", FastSynthesizer)])
def test_baseline_runs_end_to_end_and_accounts_its_time(make_cfg, method, cls):
    cfg = make_cfg(method, f"synthesis.method={method}", "lte.encoder=minilm:/nonexistent")  # no text encoder needed
    trainer = NayerTrainer(cfg)
    assert isinstance(trainer.synthesizer, cls) and trainer.lte is None
    summary = trainer.fit()
    assert summary["method"] == method and 0.0 <= summary["student_top1"] <= 1.0
    assert summary["memory_size"] == 3 * 24
    # the phases add up to the wall-clock time
    phases = [summary[f"{p}_s"] for p in ("setup", "synthesis", "io", "distillation", "evaluation", "checkpoint")]
    assert all(p > 0 for p in phases)
    assert abs(sum(phases) - summary["wall_s"]) <= 0.02 * summary["wall_s"] + 0.25, (phases, summary["wall_s"])
    assert summary["device_hours"] == pytest.approx(summary["wall_s"] / 3600)
    assert summary["device_hours_unit"] == "CPU-hours" and summary["device_kind"] == "cpu"
    # a time-to-accuracy point after every evaluation
    lines = [json.loads(x) for x in open(Path(cfg.run.run_dir) / "metrics.jsonl")]
    points = [r for r in lines if r.get("student_top1") is not None]
    assert [r["epoch"] for r in points] == [1, 2]
    assert points[0]["elapsed_s"] < points[1]["elapsed_s"] <= summary["wall_s"]
    assert 0 < points[0]["synthesis_s"] < points[1]["synthesis_s"] <= summary["synthesis_s"]


def test_synthesized_images_are_valid(make_cfg):
    for method in ("nayer", "deepinversion", "fast"):
        trainer = NayerTrainer(make_cfg(method, f"synthesis.method={method}"))
        images, labels, losses = trainer.synthesize(epoch=1, batch_index=0)
        assert images.shape == (24, 1, 28, 28) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1 and images.std() > 0
        assert labels.tolist()[:10] == list(range(10))
        assert all(torch.isfinite(v) for v in losses.values())


def test_fast_meta_generator_learns_and_deepinversion_keeps_nothing(make_cfg):
    trainer = NayerTrainer(make_cfg("fast", "synthesis.method=fast"))
    before = {k: v.clone() for k, v in trainer.synthesizer.generator.state_dict().items()}
    trainer.synthesize(0, 0)
    after = trainer.synthesizer.generator.state_dict()
    assert not torch.equal(before["fc.weight"], after["fc.weight"])  # one meta step moved G
    for meta in ("fomaml", "reptile"):
        t = NayerTrainer(make_cfg(f"fast-{meta}", "synthesis.method=fast", f"synthesis.fast.meta_learning={meta}"))
        t.synthesize(0, 0)
        assert t.synthesizer.meta_optimizer.state_dict()["state"]  # the meta optimizer stepped
    di = NayerTrainer(make_cfg("di", "synthesis.method=deepinversion"))
    assert di.synthesizer.state_dict() == {"scaler": {}}  # nothing but its loss scaler (off in fp32)
    a, _, _ = di.synthesize(0, 0)
    b, _, _ = di.synthesize(0, 1)
    assert not torch.equal(a, b)  # a fresh random start per batch


@pytest.mark.parametrize("method", ["deepinversion", "fast"])
def test_baseline_resume_after_crash_is_exact(crash_resume, method):
    cfg = crash_resume(f"synthesis.method={method}").config  # the resumed student is bit-identical
    # a run may not be resumed with another method
    cfg.synthesis.method = "nayer"
    with pytest.raises(ConfigError, match="synthesis"):
        NayerTrainer(cfg)


def test_gpu_hours_benchmark_writes_its_three_files(tmp_path, teacher_file, fake_test_split, lte_cache):
    out = tmp_path / "results" / "cmp"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu_hours",
        "--runs",
        "nayer:3",
        "deepinversion:2",
        "fast:2",
        "--launcher",
        "python",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(out),
        *tiny_set_args(teacher_file, fake_test_split, lte_cache),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert {r["method"] for r in rows} == {"nayer", "deepinversion", "fast"}
    assert sum(r["final"] == "True" for r in rows) == 3
    md = out.with_suffix(".md").read_text()
    assert "| NAYER | 3 |" in md and "Speed-up vs DeepInversion" in md and "CPU-hours" in md
    assert "python -m benchmarks.gpu_hours" in md  # the command that reproduces it
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_gpu_hours_refuses_a_setting_without_evaluation_set_before_any_run(tmp_path):
    with pytest.raises(SystemExit, match="evaluation set"):
        gpu_hours.main(["--setting", "cifar10", "--runs", "nayer:1", "--work-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="<method>:<epochs>"):
        gpu_hours.main(["--runs", "cmi:3"])
    assert not any(tmp_path.iterdir())
