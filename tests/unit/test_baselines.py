"""The DeepInversion and Fast baselines in the shared trainer, the time accounting, and the
GPU-hour comparison benchmark (benchmarks/gpu_hours.py) on a tiny budget.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_baselines_runs.py."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_hours
from nayer_scale.config import ConfigError
from nayer_scale.losses import image_prior_losses
from nayer_scale.recipes import get_preset


def test_presets_carry_the_published_baseline_settings():
    di = get_preset("cifar10_deepinversion")
    s = di.synthesis
    assert (s.method, s.num_generator_steps, s.deepinversion.pixel_lr, s.bn_loss_weight, s.ce_loss_weight) == (
        "deepinversion",
        2000,
        0.1,
        10.0,
        1.0,
    )
    assert s.deepinversion.pixel_betas == (0.5, 0.99)
    assert s.first_bn_multiplier == 10.0 and s.deepinversion.tv_loss_weight > 0 and di.run.warmup_epochs == 0
    fast = get_preset("cifar100_fast").synthesis
    assert (
        fast.method,
        fast.num_generator_steps,
        fast.noise_dim,
        fast.fast.latent_lr,
        fast.adv_loss_weight,
        fast.ce_loss_weight,
    ) == ("fast", 5, 256, 0.01, 1.1, 0.4)
    # baselines share the NAYER preset's teacher, student and student schedule
    assert get_preset("fashion_mnist_fast").distill == get_preset("fashion_mnist").distill
    with pytest.raises(ConfigError, match="synthesis.method"):
        get_preset("fashion_mnist").__class__().synthesis.__class__(method="cmi").validate()


def test_image_priors():
    flat = torch.full((2, 3, 8, 8), 0.5)
    tv, l2 = image_prior_losses(flat)
    assert tv == 0 and l2 == pytest.approx(0.5 * (2 * 3 * 64) ** 0.5)
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0] = 1.0  # one bright pixel: 1 horizontal, 1 vertical, 1 diagonal difference of 1
    tv, _ = image_prior_losses(x)
    assert tv.item() == pytest.approx(3.0)


def _rows(method, epochs, points):
    rows = [
        {
            "method": method,
            "budget_epochs": epochs,
            "epoch": i,
            "final": False,
            "top1": a,
            "device_hours": h,
            "synthesis_device_hours": h / 2,
            "unit": "CPU-hours",
            "device_kind": "cpu",
            "num_devices": 1,
        }
        for i, (h, a) in enumerate(points)
    ]
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
