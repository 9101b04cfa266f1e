"""Precision by capability (every combination, with the capability injected, not read off the CPU the
test runs on), and fp16 with loss scaling: finite losses, scalers that step, exact resume.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_precision_runs.py."""

from __future__ import annotations

import pytest
import torch

from nayer_scale.config import ConfigError
from nayer_scale.precision import CpuCapability, cpu_capability, resolve_precision
from nayer_scale.recipes import get_preset

AVX2 = CpuCapability(isa="AVX2", amx_bf16=False, avx512_bf16=False)
AVX512 = CpuCapability(isa="AVX512", amx_bf16=False, avx512_bf16=False)
AVX512_BF16 = CpuCapability(isa="AVX512", amx_bf16=False, avx512_bf16=True, vendor="GenuineIntel")
ZEN4 = CpuCapability(isa="AVX512", amx_bf16=False, avx512_bf16=True, vendor="AuthenticAMD")
AMX = CpuCapability(isa="AVX512", amx_bf16=True, avx512_bf16=True)


@pytest.mark.parametrize(
    "device,cpu,cuda_bf16,expected,channels_last",
    [
        ("cuda", None, True, "bf16", True),  # A100 / H100
        ("cuda", None, False, "fp16", True),  # V100 / T4: no bf16
        ("cpu", AMX, None, "bf16", True),  # Sapphire Rapids
        ("cpu", AVX512_BF16, None, "no", True),  # Intel without AMX: measured no faster than fp32
        ("cpu", ZEN4, None, "bf16", True),  # AMD Zen 4 EPYC: measured 1.4-1.5x faster
        ("cpu", AVX512, None, "no", True),  # Skylake / Ice Lake: bf16 emulated
        ("cpu", AVX2, None, "no", True),  # AVX2-only EPYC: bf16 emulated, ~8x slower
    ],
    ids=["cuda-bf16", "cuda-no-bf16", "cpu-amx", "cpu-avx512bf16-intel", "cpu-zen4", "cpu-avx512", "cpu-avx2"],
)
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
