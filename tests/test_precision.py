"""Precision by capability (every combination, with the capability injected, not read off the CPU the
test runs on), and fp16 with loss scaling: finite losses, scalers that step, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from nayer_scale.config import ConfigError
from nayer_scale.recipes import get_preset
from nayer_scale.storage import load_state
from nayer_scale.precision import CpuCapability, cpu_capability, resolve_precision
from nayer_scale.trainer import NayerTrainer

AVX2 = CpuCapability(isa="AVX2", amx_bf16=False, avx512_bf16=False)
AVX512 = CpuCapability(isa="AVX512", amx_bf16=False, avx512_bf16=False)
AVX512_BF16 = CpuCapability(isa="AVX512", amx_bf16=False, avx512_bf16=True, vendor="GenuineIntel")
ZEN4 = CpuCapability(isa="AVX512", amx_bf16=False, avx512_bf16=True, vendor="AuthenticAMD")
AMX = CpuCapability(isa="AVX512", amx_bf16=True, avx512_bf16=True)


@pytest.mark.parametrize("device,cpu,cuda_bf16,expected,channels_last", [
    ("cuda", None, True, "bf16", True),          # A100 / H100
    ("cuda", None, False, "fp16", True),         # V100 / T4: no bf16
    ("cpu", AMX, None, "bf16", True),            # Sapphire Rapids
    ("cpu", AVX512_BF16, None, "no", True),      # Intel without AMX: measured no faster than fp32
    ("cpu", ZEN4, None, "bf16", True),           # AMD Zen 4 EPYC: measured 1.4-1.5x faster
    ("cpu", AVX512, None, "no", True),           # Skylake / Ice Lake: bf16 emulated
    ("cpu", AVX2, None, "no", True),             # AVX2-only EPYC: bf16 emulated, ~8x slower
], ids=["cuda-bf16", "cuda-no-bf16", "cpu-amx", "cpu-avx512bf16-intel", "cpu-zen4", "cpu-avx512", "cpu-avx2"])
def test_auto_follows_the_capability(device, cpu, cuda_bf16, expected, channels_last):
    p = resolve_precision("auto", "auto", device, cpu=cpu, cuda_bf16=cuda_bf16)
    assert (p.mixed_precision, p.channels_last, p.device_type) == (expected, channels_last, device)
    assert p.reason.startswith("auto:")
    if device == "cpu" and expected == "no":
        assert ("no native bf16" if not cpu.avx512_bf16 else "measured no faster") in p.reason


def test_cuda_auto_does_not_count_emulated_bf16(monkeypatch):
    """A T4 'supports' bf16 by emulation (torch.cuda.is_bf16_supported() is True by default): auto
    must ask for native support and give fp16 with loss scaling there."""
    calls = []

    def supported(including_emulation=True):
        calls.append(including_emulation)
        return including_emulation  # the T4: emulated only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    p = resolve_precision("auto", "auto", "cuda")
    assert calls == [False] and p.mixed_precision == "fp16" and "fp16 with loss scaling" in p.reason


@pytest.mark.parametrize("cpu", [AVX2, AMX])
@pytest.mark.parametrize("requested", ["no", "bf16", "fp16"])
def test_explicit_values_are_honoured(requested, cpu):
    p = resolve_precision(requested, "false", "cpu", cpu=cpu)
    assert p.mixed_precision == requested and p.channels_last is False and "requested" in p.reason
    assert resolve_precision(requested, True, "cuda", cuda_bf16=False).channels_last is True
    assert resolve_precision(requested, "auto", "cuda", cuda_bf16=False).mixed_precision == requested


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="mixed_precision"):
        resolve_precision("fp8", "auto", "cpu", cpu=AVX2)
    with pytest.raises(ValueError, match="channels_last"):
        resolve_precision("auto", "maybe", "cpu", cpu=AVX2)
    cfg = get_preset("fashion_mnist")
    cfg.run.channels_last = "maybe"
    with pytest.raises(ConfigError, match="run.channels_last"):
        cfg.validate()


def test_autocast_and_scaler_follow_the_precision():
    fp32 = resolve_precision("no", "false", "cpu", cpu=AVX2)
    with fp32.autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    assert not fp32.grad_scaler().is_enabled()
    bf16 = resolve_precision("bf16", "false", "cpu", cpu=AMX)
    with bf16.autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16
    assert not bf16.grad_scaler().is_enabled()  # bf16 has fp32's exponent range: no scaling
    assert resolve_precision("fp16", "false", "cpu", cpu=AVX2).grad_scaler().is_enabled()


def test_every_preset_defaults_to_auto():
    from nayer_scale.recipes import PRESETS

    for name in PRESETS:
        run = get_preset(name).run
        assert (run.mixed_precision, run.channels_last) == ("auto", "auto"), name


def test_this_machine_is_described():
    cap = cpu_capability()
    assert cap.isa and isinstance(cap.native_bf16, bool)


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
