"""Fake quantization of a copy of the teacher: the quantized student of data-free quantization
(NAYER, Tran et al., CVPR 2024, Table 3; ZeroQ, Cai et al., CVPR 2020; GDFQ, Xu et al., ECCV 2020).

The student is ``quantized_copy(teacher, "w4a4")``: the teacher's architecture and weights with

- BatchNorm folded into the convolution before it where the graph allows (a Conv2d whose only
  user is a BatchNorm2d, found by ``torch.fx`` tracing; eval-mode folding of
  ``torch.nn.utils.fusion.fuse_conv_bn_eval``:  W' = W * gamma / sqrt(var + eps),
  b' = (b - mean) * gamma / sqrt(var + eps) + beta). A network that does not trace, or a
  BatchNorm that follows something else (pre-activation blocks), keeps its BatchNorm;
- every Conv2d / Linear a ``torch.ao.nn.qat`` module whose weight is fake-quantized per output
  channel, symmetric, signed narrow range:  s_c = max|W_c| / (2^(B-1) - 1),
  q = clamp(round(W / s_c), -(2^(B-1) - 1), 2^(B-1) - 1), W_q = q * s_c (zero point 0);
- the input of every Conv2d / Linear fake-quantized per tensor, affine, unsigned:
  s = (max(x_max, 0) - min(x_min, 0)) / (2^B - 1),  z = clamp(-round(x_min / s), 0, 2^B - 1),
  x_q = (clamp(round(x / s) + z, 0, 2^B - 1) - z) * s, with [x_min, x_max] an exponential moving
  average of the batch ranges (``MovingAverageMinMaxObserver``, constant 0.01) in training mode,
  frozen in eval mode, set by calibration (``nayer_scale.quantization.calibrate``) for PTQ;
- the first and the last quantized layer (execution order) at 8 bits, weights and inputs
  (``keep_ends_8bit``, the ZeroQ / GDFQ convention).

Gradients are the straight-through estimator of ``torch.fake_quantize_per_*_affine`` (Bengio et al.,
2013): d x_q / d x = 1 inside the clamping range, 0 outside. The observers, fake-quant ops and
QAT modules are PyTorch's (``torch.ao.quantization``); written here are only the two small
subclasses that make the weight range follow the current weights and that freeze the activation
range outside training, and the percentile observer of PTQ calibration.
"""

from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.ao.nn import qat
from torch.ao.quantization import FakeQuantize, MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver
from torch.ao.quantization.qconfig import QConfig
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "QuantSpec",
    "parse_quantization",
    "WeightFakeQuantize",
    "ActivationFakeQuantize",
    "PercentileObserver",
    "QuantConv2d",
    "QuantLinear",
    "fold_batchnorm",
    "quantized_copy",
    "quantized_layers",
    "activation_quantizers",
    "QUANTIZATION_PATTERN",
]

#: ``w{B}a{B}``: weight bits then activation bits, each 2..8.
QUANTIZATION_PATTERN = re.compile(r"^w([2-8])a([2-8])$")
EMA_CONSTANT = 0.01  # torch.ao's default averaging constant of MovingAverageMinMaxObserver


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths of a quantized student: ``weight_bits``, ``activation_bits`` in 2..8, and
    whether the first and last quantized layers stay at 8 bits."""

    weight_bits: int
    activation_bits: int
    keep_ends_8bit: bool = True

    @property
    def name(self) -> str:
        return f"w{self.weight_bits}a{self.activation_bits}"


def parse_quantization(text: str, keep_ends_8bit: bool = True) -> QuantSpec | None:
    """``"w4a8"`` -> QuantSpec(4, 8); ``"none"`` -> None.

    Raises:
        ValueError: ``text`` is neither "none" nor w{B}a{B} with B in 2..8.
    """
    if text == "none":
        return None
    match = QUANTIZATION_PATTERN.match(text)
    if not match:
        raise ValueError(
            f"student.quantization={text!r} is not w{{B}}a{{B}} with bit widths B in 2..8: use e.g. "
            "w8a8, w6a6, w4a8, w4a4, or none"
        )
    return QuantSpec(int(match.group(1)), int(match.group(2)), keep_ends_8bit)


class WeightFakeQuantize(FakeQuantize):
    """Per-output-channel symmetric fake quantization of a weight (C_out, ...) at ``bits``: the
    range is that of the current weights on every call (the observer is reset first), so it
    follows training; ``disable_observer()`` freezes the stored scales (a loaded export).

    Buffers: ``scale`` (C_out,) float32, ``zero_point`` (C_out,) int32 (zeros)."""

    def __init__(self, bits: int = 8, **kwargs) -> None:
        qmax = 2 ** (bits - 1) - 1
        super().__init__(
            observer=PerChannelMinMaxObserver,
            quant_min=-qmax,
            quant_max=qmax,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
            **kwargs,
        )
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer_enabled[0] == 1:
            self.activation_post_process.reset_min_max_vals()
        return super().forward(x)


class ActivationFakeQuantize(FakeQuantize):
    """Per-tensor affine fake quantization of an activation at ``bits`` (range [0, 2^bits - 1]).

    The range is observed only in training mode (EMA of batch min / max by default) or while
    ``calibrating``; in eval mode it is frozen. Until a range has been observed (buffer
    ``calibrated`` == 0) the input passes unchanged, so a fresh student is never quantized with
    the placeholder scale 1.

    Buffers: ``scale`` (1,) float32, ``zero_point`` (1,) int32, ``calibrated`` (1,) uint8, and the
    observer's ``min_val`` / ``max_val``."""

    def __init__(self, bits: int = 8, observer=MovingAverageMinMaxObserver, **kwargs) -> None:
        kwargs.setdefault("averaging_constant", EMA_CONSTANT) if observer is MovingAverageMinMaxObserver else None
        super().__init__(
            observer=observer,
            quant_min=0,
            quant_max=2**bits - 1,
            dtype=torch.quint8,
            qscheme=torch.per_tensor_affine,
            **kwargs,
        )
        self.bits = bits
        self.calibrating = False
        self.register_buffer("calibrated", torch.zeros(1, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()  # the fake-quant ops and observers work in float32 (autocast may hand bf16 / fp16)
        if (self.training or self.calibrating) and self.observer_enabled[0] == 1:
            self.activation_post_process(x.detach())
            self.load_range()
        if self.fake_quant_enabled[0] == 1 and self.calibrated[0] == 1:
            x = torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.quant_min, self.quant_max)
        return x.to(dtype)

    def load_range(self) -> None:
        """scale / zero point from the observer's current [min_val, max_val]; marks it calibrated."""
        scale, zero_point = self.activation_post_process.calculate_qparams()
        self.scale.copy_(scale.to(self.scale.device).reshape(1))
        self.zero_point.copy_(zero_point.to(self.zero_point.device).reshape(1))
        self.calibrated.fill_(1)

    @property
    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The observed (min_val, max_val) float32 scalars."""
        return self.activation_post_process.min_val, self.activation_post_process.max_val


class PercentileObserver(MinMaxObserver):
    """Calibration observer: [min_val, max_val] is the mean over the observed batches of each
    batch's (1 - p) and p quantiles (p = ``percentile`` / 100), which ignores rare outliers that
    min-max calibration keeps (the percentile calibration of e.g. Wu et al., "Integer
    Quantization for Deep Learning Inference", 2020, Sec. 4.1). Quantiles by ``torch.kthvalue``
    (no size limit), interpolation "lower"."""

    def __init__(self, percentile: float = 99.99, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile
        self.register_buffer("batches", torch.zeros((), dtype=torch.int64))

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        x = x_orig.detach().float().reshape(-1)
        n = x.numel()
        k_hi = max(1, min(n, int(round(self.percentile / 100.0 * (n - 1))) + 1))
        k_lo = max(1, n + 1 - k_hi)
        lo, hi = torch.kthvalue(x, k_lo).values, torch.kthvalue(x, k_hi).values
        count = self.batches.float()
        if self.batches == 0:
            self.min_val, self.max_val = lo.clone(), hi.clone()
        else:
            self.min_val.copy_((self.min_val * count + lo) / (count + 1))
            self.max_val.copy_((self.max_val * count + hi) / (count + 1))
        self.batches += 1
        return x_orig


class QuantConv2d(qat.Conv2d):
    """``torch.ao.nn.qat.Conv2d`` (fake-quantized weight) with a fake-quantized input
    (``input_fake_quant``): (N, C_in, H, W) float -> (N, C_out, H', W') float."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.input_fake_quant(x))


class QuantLinear(qat.Linear):
    """``torch.ao.nn.qat.Linear`` (fake-quantized weight) with a fake-quantized input
    (``input_fake_quant``): (N, in_features) float -> (N, out_features) float."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.input_fake_quant(x))


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _trace(model: nn.Module) -> fx.GraphModule | None:
    """fx graph of ``model`` (``return_features`` pinned to False where the forward has it), or None."""
    import inspect

    concrete = {"return_features": False} if "return_features" in inspect.signature(model.forward).parameters else None
    try:
        return fx.symbolic_trace(model, concrete_args=concrete)
    except Exception:  # noqa: BLE001 - any untraceable model: no folding, registration order
        return None


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every BatchNorm2d that directly and only follows a Conv2d into that convolution, in
    place (the model must be in eval mode; ``fuse_conv_bn_eval``); the BatchNorm becomes
    nn.Identity so that the model's own forward still runs. A model that ``torch.fx`` cannot trace
    is left unchanged (with a warning).

    Returns:
        The folded (conv name, bn name) pairs.
    Raises:
        ValueError: the model is in training mode (folding uses the running statistics).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs the model in eval mode (it folds the running BN statistics)")
    graph = _trace(model)
    if graph is None:
        warnings.warn(f"{type(model).__name__} does not trace with torch.fx: BatchNorm is not folded", stacklevel=2)
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and type(modules.get(source.target)) is nn.Conv2d
            and len(source.users) == 1
            and modules[node.target].track_running_stats
        ):
            pairs.append((source.target, node.target))
    for conv_name, bn_name in pairs:
        _set_module(model, conv_name, fuse_conv_bn_eval(modules[conv_name], modules[bn_name]))
        _set_module(model, bn_name, nn.Identity())
    return pairs


def _execution_order(model: nn.Module) -> list[str]:
    """Names of the Conv2d / Linear modules in execution order (fx), else registration order."""
    graph = _trace(model)
    modules = dict(model.named_modules())
    if graph is not None:
        names = [
            n.target
            for n in graph.graph.nodes
            if n.op == "call_module" and type(modules.get(n.target)) in (nn.Conv2d, nn.Linear)
        ]
        if names:
            return list(dict.fromkeys(names))
    return [name for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]


def quantized_copy(model: nn.Module, spec: QuantSpec, fold_bn: bool = True) -> nn.Module:
    """A fake-quantized copy of ``model`` (left unchanged): BN folded (``fold_bn``), every Conv2d /
    Linear replaced by QuantConv2d / QuantLinear at ``spec``'s bit widths, the first and last at 8
    bits if ``spec.keep_ends_8bit``. The copy is in eval mode, its weight scales computed, its
    activation ranges not yet observed (see ``ActivationFakeQuantize``); forward hooks of the
    original (e.g. the teacher's BN-statistics hooks) are not copied. Its state_dict holds the
    weights and every quantizer buffer (it resumes exactly).

    Raises:
        ValueError: ``model`` has no Conv2d or Linear layer.
    """
    student = copy.deepcopy(model).eval()
    for p in student.parameters():
        p.requires_grad_(True)  # the teacher's are frozen
    for m in student.modules():  # the teacher's BN-statistics hooks must not fire on the student
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    if fold_bn:
        fold_batchnorm(student)
    names = _execution_order(student)
    if not names:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to quantize")
    ends = {names[0], names[-1]} if spec.keep_ends_8bit else set()
    for name in names:
        layer = student.get_submodule(name)
        w_bits, a_bits = (8, 8) if name in ends else (spec.weight_bits, spec.activation_bits)
        layer.qconfig = QConfig(
            activation=ActivationFakeQuantize.with_args(bits=a_bits), weight=WeightFakeQuantize.with_args(bits=w_bits)
        )
        cls = QuantConv2d if isinstance(layer, nn.Conv2d) else QuantLinear
        quant = cls.from_float(layer)
        quant.input_fake_quant = layer.qconfig.activation()
        del layer.qconfig
        quant.to(layer.weight.device)
        with torch.no_grad():
            quant.weight_fake_quant(quant.weight)  # weight scales of the initial weights
        _set_module(student, name, quant)
    return student.eval()


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """name -> QuantConv2d / QuantLinear of ``model``, in registration order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}


def activation_quantizers(model: nn.Module) -> dict[str, ActivationFakeQuantize]:
    """name -> every ActivationFakeQuantize of ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ActivationFakeQuantize)}
