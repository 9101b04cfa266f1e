"""Integer export of a fake-quantized student and the loader that rebuilds it.

File layout (one safetensors file, pickle-free, written atomically), per quantized layer ``L``:

    L.weight_int         int8   (C_out, ...)  q = round(W / s), |q| <= 2^(B_w - 1) - 1
    L.weight_scale       float32 (C_out,)     s, per output channel (symmetric)
    L.weight_zero_point  int32  (C_out,)      zeros
    L.bias               float32 (C_out,)     (folded BatchNorm shift), if the layer has one
    L.input_scale        float32 (1,)         activation scale, per tensor
    L.input_zero_point   int32  (1,)          activation zero point (unsigned range [0, 2^B_a - 1])
    L.input_min / L.input_max  float32 ()     the observed activation range

plus every other float tensor of the model's state under its own name (e.g. a BatchNorm that could
not be folded). The metadata holds the format, ``arch``, ``num_classes``, ``in_channels``,
``quantization`` (``w{B}a{B}``), ``keep_ends_8bit``, ``fold_bn``, ``layer_bits`` (JSON
name -> [weight bits, activation bits]) and whatever the caller adds (mean, std, class names).

``load_quantized`` rebuilds the architecture from the model zoo, applies the same BN folding and
quantization, and installs the integers, scales and ranges with the weight observers frozen:
its outputs equal the exported model's (tested), hence the same top-1.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..models import build_model
from ..storage import atomic_path
from .fake_quant import QuantSpec, parse_quantization, quantized_copy, quantized_layers

__all__ = ["export_quantized", "load_quantized", "FORMAT", "RESERVED_KEYS"]

FORMAT = "nayer-scale-quantized/1"
#: metadata keys written by ``export_quantized`` itself
RESERVED_KEYS = (
    "format",
    "arch",
    "num_classes",
    "in_channels",
    "quantization",
    "keep_ends_8bit",
    "fold_bn",
    "layer_bits",
)


def _layer_bits(model: nn.Module) -> dict[str, list[int]]:
    return {name: [m.weight_fake_quant.bits, m.input_fake_quant.bits] for name, m in quantized_layers(model).items()}


@torch.no_grad()
def export_quantized(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    arch: str,
    num_classes: int,
    in_channels: int,
    spec: QuantSpec,
    fold_bn: bool = True,
    metadata: dict[str, str] | None = None,
) -> dict:
    """Write ``model`` (from ``quantized_copy``, trained or calibrated) as integers + scales.

    Args:
        arch, num_classes, in_channels: how ``load_quantized`` rebuilds it (``build_model``).
        spec, fold_bn: the quantization it was built with.
        metadata: extra string entries (must not clash with the reserved keys).
    Returns:
        The metadata written.
    Raises:
        ValueError: an activation quantizer has never observed a range (calibrate or train first).
    """
    layers = quantized_layers(model)
    tensors: dict[str, torch.Tensor] = {}
    covered: set[str] = set()
    for name, layer in layers.items():
        tensors.update(_layer_tensors(name, layer))
        covered.update(k for k in model.state_dict() if k.startswith(name + "."))
    for key, value in model.state_dict().items():
        if key not in covered:
            tensors[key] = value.detach().contiguous()
    meta = _export_metadata(model, arch, num_classes, in_channels, spec, fold_bn, metadata)
    with atomic_path(path) as tmp:
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
    return meta


def _layer_tensors(name: str, layer: nn.Module) -> dict[str, torch.Tensor]:
    """One quantized layer's integer weights, scales, zero points, bias and input range (ValueError if uncalibrated)."""
    tensors: dict[str, torch.Tensor] = {}
    wq, aq = layer.weight_fake_quant, layer.input_fake_quant
    if not bool(aq.calibrated[0]):
        raise ValueError(
            f"{name}: its activation range was never observed; calibrate or train the model before exporting"
        )
    w = layer.weight.detach().float()
    if bool(wq.observer_enabled[0]):
        wq(w)  # scales of the current weights
    scale = wq.scale.detach().float()
    shape = (-1,) + (1,) * (w.dim() - 1)
    faked = torch.fake_quantize_per_channel_affine(w, scale, wq.zero_point, 0, wq.quant_min, wq.quant_max)
    tensors[f"{name}.weight_int"] = torch.round(faked / scale.view(shape)).to(torch.int8).contiguous()
    tensors[f"{name}.weight_scale"] = scale.contiguous()
    tensors[f"{name}.weight_zero_point"] = wq.zero_point.detach().to(torch.int32).contiguous()
    if layer.bias is not None:
        tensors[f"{name}.bias"] = layer.bias.detach().float().contiguous()
    tensors[f"{name}.input_scale"] = aq.scale.detach().float().contiguous()
    tensors[f"{name}.input_zero_point"] = aq.zero_point.detach().to(torch.int32).contiguous()
    tensors[f"{name}.input_min"] = aq.range[0].detach().float().reshape(()).contiguous()
    tensors[f"{name}.input_max"] = aq.range[1].detach().float().reshape(()).contiguous()
    return tensors


def _export_metadata(
    model: nn.Module,
    arch: str,
    num_classes: int,
    in_channels: int,
    spec: QuantSpec,
    fold_bn: bool,
    metadata: dict[str, str] | None,
) -> dict[str, str]:
    """The export's metadata: the reserved entries, then ``metadata`` (ValueError on a reserved key)."""
    meta = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": str(num_classes),
        "in_channels": str(in_channels),
        "quantization": spec.name,
        "keep_ends_8bit": json.dumps(spec.keep_ends_8bit),
        "fold_bn": json.dumps(fold_bn),
        "layer_bits": json.dumps(_layer_bits(model)),
    }
    clash = set(meta) & set(metadata or {})
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are reserved by the export format")
    meta.update(metadata or {})
    return meta


@torch.no_grad()
def load_quantized(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, str]]:
    """Rebuild the fake-quantized model written by ``export_quantized`` (eval mode, weight scales
    frozen to the stored ones). Returns (model, metadata).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not this format, unknown architecture, or tensors / bit widths that do not
            match the rebuilt model.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no quantized export at {path}")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (format={meta.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    spec = parse_quantization(meta["quantization"], json.loads(meta["keep_ends_8bit"]))
    base = build_model(meta["arch"], int(meta["num_classes"]), int(meta["in_channels"])).eval()
    model = quantized_copy(base, spec, fold_bn=json.loads(meta["fold_bn"]))
    if _layer_bits(model) != json.loads(meta["layer_bits"]):
        raise ValueError(
            f"{path}: the layers / bit widths of the rebuilt {meta['arch']} differ from the file's "
            f"layer_bits; was it exported from another model?"
        )
    state = model.state_dict()
    for name, layer in quantized_layers(model).items():
        wq, aq = layer.weight_fake_quant, layer.input_fake_quant
        scale = tensors.pop(f"{name}.weight_scale")
        q = tensors.pop(f"{name}.weight_int").float()
        layer.weight.copy_(q * scale.view((-1,) + (1,) * (q.dim() - 1)))
        wq.scale.resize_(scale.shape).copy_(scale)
        wq.zero_point.resize_(scale.shape).copy_(tensors.pop(f"{name}.weight_zero_point"))
        wq.disable_observer()
        if layer.bias is not None:
            layer.bias.copy_(tensors.pop(f"{name}.bias"))
        aq.scale.copy_(tensors.pop(f"{name}.input_scale"))
        aq.zero_point.copy_(tensors.pop(f"{name}.input_zero_point"))
        aq.activation_post_process.min_val.copy_(tensors.pop(f"{name}.input_min"))
        aq.activation_post_process.max_val.copy_(tensors.pop(f"{name}.input_max"))
        aq.calibrated.fill_(1)
    missing = [k for k in state if k not in tensors and not any(k.startswith(n + ".") for n in quantized_layers(model))]
    unexpected = [k for k in tensors if k not in state]
    if missing or unexpected:
        raise ValueError(
            f"{path}: tensors do not match the rebuilt {meta['arch']}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.load_state_dict(tensors, strict=False)
    return model.to(device).eval(), dict(meta)
