"""The DeepInversion and Fast baselines in the shared trainer, the time accounting, and the
GPU-hour comparison benchmark (benchmarks/gpu_hours.py) on a tiny budget."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, tiny_set_args
from nayer_scale.config import ConfigError
from nayer_scale.recipes import get_preset
from nayer_scale.losses import image_prior_losses
from nayer_scale.synthesis import DeepInversionSynthesizer, FastSynthesizer
from nayer_scale.trainer import NayerTrainer

from benchmarks import gpu_hours

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_cfg(tmp_path, teacher_file, fake_test_split, lte_cache):
    def make(name="run", *overrides):
        return tiny_config(tmp_path / name, teacher_file, fake_test_split, lte_cache, *overrides)
    return make


def test_presets_carry_the_published_baseline_settings():
    di = get_preset("cifar10_deepinversion")
    s = di.synthesis
    assert (s.method, s.num_generator_steps, s.deepinversion.pixel_lr, s.bn_loss_weight, s.ce_loss_weight) == \
        ("deepinversion", 2000, 0.1, 10.0, 1.0)
    assert s.deepinversion.pixel_betas == (0.5, 0.99)
    assert s.first_bn_multiplier == 10.0 and s.deepinversion.tv_loss_weight > 0 and di.run.warmup_epochs == 0
    fast = get_preset("cifar100_fast").synthesis
    assert (fast.method, fast.num_generator_steps, fast.noise_dim, fast.fast.latent_lr, fast.adv_loss_weight,
            fast.ce_loss_weight) == ("fast", 5, 256, 0.01, 1.1, 0.4)
    # baselines share the NAYER preset's teacher, student and student schedule
    assert get_preset("fashion_mnist_fast").distill == get_preset("fashion_mnist").distill
    with pytest.raises(ConfigError, match="synthesis.method"):
        get_preset("fashion_mnist").__class__().synthesis.__class__(method="cmi").validate()


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


def test_image_priors():
    flat = torch.full((2, 3, 8, 8), 0.5)
    tv, l2 = image_prior_losses(flat)
    assert tv == 0 and l2 == pytest.approx(0.5 * (2 * 3 * 64) ** 0.5)
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0] = 1.0  # one bright pixel: 1 horizontal, 1 vertical, 1 diagonal difference of 1
    tv, _ = image_prior_losses(x)
    assert tv.item() == pytest.approx(3.0)


def _rows(method, epochs, points):
    rows = [{"method": method, "budget_epochs": epochs, "epoch": i, "final": False, "top1": a, "device_hours": h,
             "synthesis_device_hours": h / 2, "unit": "CPU-hours", "device_kind": "cpu", "num_devices": 1}
            for i, (h, a) in enumerate(points)]
    return rows + [{**rows[-1], "final": True}]


def test_speedup_analysis_on_known_curves():
    results = [
        ("deepinversion", 60, _rows("deepinversion", 60, [(1.0, 0.5), (4.0, 0.8), (10.0, 0.8)])),
        ("nayer", 20, _rows("nayer", 20, [(0.1, 0.7), (0.5, 0.82), (1.0, 0.85)])),
        ("nayer", 5, _rows("nayer", 5, [(0.1, 0.6), (0.2, 0.7)])),
        ("fast", 60, _rows("fast", 60, [(0.3, 0.6), (0.9, 0.75)])),
    ]
    table, lines = gpu_hours.analyse(results)
    speed = {(r["method"], r["budget_epochs"]): r["speedup_vs_di"] for r in table}
    assert speed[("nayer", 20)] == pytest.approx(10.0) and speed[("deepinversion", 60)] == pytest.approx(1.0)
    text = "\n".join(lines)
    assert "first reached after 4.000" in text  # DeepInversion's 80% is first reached at 4 h
    assert "**8.0x**" in text  # NAYER-20 first reaches 80% at 0.5 h
    assert "NAYER (5 epochs) never reaches" in text
    assert "**+10.00 points**" in text  # NAYER-20 (1.0 h) vs Fast (0.9 h): 85% vs 75%


@pytest.mark.slow
def test_gpu_hours_benchmark_writes_its_three_files(tmp_path, teacher_file, fake_test_split, lte_cache):
    out = tmp_path / "results" / "cmp"
    cmd = [sys.executable, "-m", "benchmarks.gpu_hours", "--runs", "nayer:3", "deepinversion:2", "fast:2",
           "--launcher", "python", "--work-dir", str(tmp_path / "work"), "--out", str(out),
           *tiny_set_args(teacher_file, fake_test_split, lte_cache)]
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
