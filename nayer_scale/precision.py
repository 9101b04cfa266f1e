"""Numeric precision and memory format chosen by what the hardware runs fast.

``run.mixed_precision=auto`` (the default of every preset) resolves, once per run, to:

- CUDA: ``bf16`` where the GPU computes it natively (``torch.cuda.is_bf16_supported(
  including_emulation=False)``: Ampere and newer), else ``fp16`` with loss scaling (V100, T4: torch
  would emulate bf16 there, slowly);
- CPU: ``bf16`` only where it was measured faster than fp32 (``benchmarks/results/precision_cpu.md``
  has every CPU kind measured, channels_last, seconds per teacher / generator / student step):
    - AMX-BF16 tiles (Intel Sapphire Rapids and newer): faster (CIFAR ResNet-18 step 2.1 s vs 5.5 s);
    - AVX512-BF16 on an AMD CPU (Zen 4 EPYC, family 25): faster, 0.248 / 0.452 / 0.162 s against
      0.350 / 0.642 / 0.245 s in fp32;
    - AVX512-BF16 on an Intel CPU without AMX: no faster, 0.686 / 0.786 / 0.317 s against
      0.469 / 0.837 / 0.301 s in fp32, and less precise: ``no`` (fp32);
    - no native bf16 (e.g. an AVX2-only EPYC): autocast emulates it, 10-16x *slower*: ``no``.

``run.channels_last=auto`` is on: NHWC was faster on CUDA, on a CPU with AMX-BF16 and, measured
with ``benchmarks/precision_cpu.py`` (``benchmarks/results/precision_cpu.md``), also in fp32 on the
AVX2-only EPYC (ResNet-20 teacher step 0.72 s vs 1.03 s NCHW, student step 0.45 s vs 0.60 s,
NAYER generator step 1.24 s vs 1.36 s; emulated bf16 8.7-13.4 s per step).

An explicit value (``no``, ``bf16``, ``fp16``; ``true`` / ``false``) is always honoured. The
resolved choice and the reason are printed at start-up and written to ``config.json`` and
``summary.json`` (``Precision.to_dict``).

With fp16 every optimised quantity gets a ``torch.amp.GradScaler`` (``Precision.grad_scaler``):
the generator and noisy layer, DeepInversion's pixels, Fast's inner generator, and the student.
bf16 needs none (same exponent range as fp32). BN statistics are accumulated in fp32 whatever the
precision (``nayer_kernels.bn_stats``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import CHANNELS_LAST, MIXED_PRECISIONS

__all__ = ["CpuCapability", "MIXED_PRECISIONS", "Precision", "cpu_capability", "describe_device", "resolve_precision"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class CpuCapability:
    """What the CPU computes natively.

    Attributes:
        isa: ``torch.backends.cpu.get_cpu_capability()``, e.g. "AVX2", "AVX512".
        amx_bf16: AMX tiles with bf16 (Intel Sapphire Rapids and newer).
        avx512_bf16: AVX512-BF16 instructions (Intel Cooper Lake, AMD Zen 4 and newer).
        model: the CPU model name from /proc/cpuinfo ("" when unknown), for records.
        vendor: ``vendor_id`` from /proc/cpuinfo ("GenuineIntel", "AuthenticAMD", "" when unknown).
        family_model: "family F model M" from /proc/cpuinfo ("" when unknown): CPUs of one model
            name (e.g. "AMD EPYC" in a VM) differ by family.
    """

    isa: str
    amx_bf16: bool
    avx512_bf16: bool
    model: str = ""
    vendor: str = ""
    family_model: str = ""

    @property
    def native_bf16(self) -> bool:
        return self.amx_bf16 or self.avx512_bf16


def _cpuinfo() -> tuple[set[str], dict[str, str]]:
    """(flags, fields) of the first CPU in /proc/cpuinfo (fields: "model name", "vendor_id",
    "cpu family", "model"); empty on other systems."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set(), {}
    flags, fields = set(), {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key in ("model name", "vendor_id", "cpu family", "model") and key not in fields:
            fields[key] = value.strip()
        elif not key and fields:  # the blank line after the first CPU
            break
    return flags, fields


def cpu_capability() -> CpuCapability:
    """Probe this machine's CPU (torch's own checks, and the /proc/cpuinfo flags as a fallback)."""
    flags, fields = _cpuinfo()

    def probe(name: str, flag: str) -> bool:
        check = getattr(torch.cpu, name, None)
        try:
            return bool(check()) if check is not None else flag in flags
        except Exception:  # noqa: BLE001 - a failing probe means "not available"
            return flag in flags

    family = (
        f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields and "model" in fields else ""
    )
    return CpuCapability(
        isa=torch.backends.cpu.get_cpu_capability(),
        amx_bf16=probe("_is_amx_tile_supported", "amx_bf16"),
        avx512_bf16=probe("_is_avx512_bf16_supported", "avx512_bf16"),
        model=fields.get("model name", ""),
        vendor=fields.get("vendor_id", ""),
        family_model=family,
    )


def describe_device(device: torch.device | str = "cpu") -> str:
    """A record of the hardware for published numbers: the GPU name, or the CPU model with its
    instruction set, its native bf16 flags and the visible core count, e.g.
    ``"AMD EPYC (family 25 model 17; AVX512; native bf16: avx512_bf16; 2 cores)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cap = cpu_capability()
    flags = [flag for flag, on in (("amx_bf16", cap.amx_bf16), ("avx512_bf16", cap.avx512_bf16)) if on]
    kind = f"{cap.family_model}; " if cap.family_model else ""
    return f"{cap.model or 'CPU'} ({kind}{cap.isa}; native bf16: {', '.join(flags) or 'none'}; {os.cpu_count()} cores)"


@dataclass(frozen=True)
class Precision:
    """The resolved precision of a run.

    Attributes:
        mixed_precision: "no" (fp32), "bf16" or "fp16" autocast.
        channels_last: whether models and inputs use the NHWC memory format.
        device_type: "cuda" or "cpu".
        reason: one sentence saying why (the capability that decided, or "requested").
    """

    mixed_precision: str
    channels_last: bool
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        """The autocast dtype (torch.float32 for "no")."""
        return _DTYPES.get(self.mixed_precision, torch.float32)

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for this precision, or a no-op context for fp32."""
        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A dynamic loss scaler (Micikevicius et al., ICLR 2018, "Mixed precision training"),
        enabled only for fp16; disabled scalers pass losses and steps through unchanged."""
        return torch.amp.GradScaler(self.device_type, enabled=self.mixed_precision == "fp16")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_precision(
    mixed_precision: str,
    channels_last: str | bool,
    device: torch.device | str,
    cpu: CpuCapability | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """Resolve ``run.mixed_precision`` and ``run.channels_last`` for a device (see module docstring).

    Args:
        mixed_precision: "auto", "no", "bf16" or "fp16".
        channels_last: "auto", "true"/"false" or a bool.
        device: the training device; only its type matters.
        cpu: the CPU's capability (default: probed with ``cpu_capability``); tests inject it.
        cuda_bf16: whether the GPU runs bf16 natively (default:
            ``torch.cuda.is_bf16_supported(including_emulation=False)``).
    Returns:
        the Precision to run with.
    Raises:
        ValueError: for a value outside the choices above.
    """
    device_type = torch.device(device).type
    if mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(f"run.mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, got {mixed_precision!r}")
    layout = str(channels_last).lower()
    if layout not in CHANNELS_LAST:
        raise ValueError(f"run.channels_last must be auto, true or false, got {channels_last!r}")
    if device_type == "cuda":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False) if cuda_bf16 is None else cuda_bf16
        native = "bf16" if bf16 else "fp16"
        why = "the GPU supports bf16" if bf16 else "the GPU has no bf16: fp16 with loss scaling"
    else:
        cap = cpu or cpu_capability()
        amd_bf16 = cap.avx512_bf16 and cap.vendor == "AuthenticAMD"
        native = "bf16" if cap.amx_bf16 or amd_bf16 else "no"
        if cap.amx_bf16:
            why = f"the CPU ({cap.isa}) has AMX-BF16, where bf16 was measured faster than fp32"
        elif amd_bf16:
            why = f"the AMD CPU ({cap.isa}) has AVX512-BF16, where bf16 was measured 1.4-1.5x faster than fp32"
        elif cap.avx512_bf16:
            why = (
                f"the CPU ({cap.isa}) has AVX512-BF16 but no AMX: on an Intel CPU bf16 was measured no faster "
                "than fp32 there (and it costs precision)"
            )
        else:
            why = (
                f"the CPU ({cap.isa}) has no native bf16 (no AMX-BF16 / AVX512-BF16): bf16 would be emulated, "
                "several times slower than fp32"
            )
    if mixed_precision == "auto":
        chosen, reason = native, f"auto: {why}"
    else:
        chosen, reason = mixed_precision, f"requested (auto would give {native})"
    # channels_last: measured faster on every device tried (benchmarks/results/precision_cpu.md: also in
    # fp32 on an AVX2-only CPU, where it was suspected of costing time), so "auto" turns it on.
    nhwc = layout != "false"
    return Precision(mixed_precision=chosen, channels_last=nhwc, device_type=device_type, reason=reason)
