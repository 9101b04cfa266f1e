"""Post-training calibration of the activation ranges of a fake-quantized model (PTQ; the
calibration step of ZeroQ, Cai et al., CVPR 2020, Sec. 3.2, on "distilled data").

Each ``ActivationFakeQuantize`` observes the float (un-quantized) inputs of its layer over the
calibration batches with ``torch.ao``'s ``MinMaxObserver`` (global min / max) or the
``PercentileObserver`` (mean of the per-batch 0.01 % / 99.99 % quantiles); the range found then
becomes the starting point of the quantizer's EMA observer and its scale / zero point. No weight
changes (weights keep their per-channel min-max scales).
"""

from __future__ import annotations

from typing import Callable, Iterable, Literal

import torch
from torch import nn
from torch.ao.quantization import MinMaxObserver

from .fake_quant import PercentileObserver, activation_quantizers

__all__ = ["calibrate", "CALIBRATION_METHODS"]

CalibrationMethod = Literal["minmax", "percentile"]
CALIBRATION_METHODS = ("minmax", "percentile")


@torch.no_grad()
def calibrate(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    method: CalibrationMethod = "minmax",
    percentile: float = 99.99,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, tuple[float, float]]:
    """Set every activation range of ``model`` from ``batches``, in place (model left in eval mode).

    Args:
        model: a model from ``quantized_copy``.
        batches: image batches (N, C, H, W) float, on the model's device; ``normalize`` (e.g. the
            teacher's mean / std normalisation) is applied to each first.
        method: "minmax" or "percentile" (``percentile`` of each batch, averaged over batches).
    Returns:
        quantizer name -> (min, max) range found (float, the input units of its layer).
    Raises:
        ValueError: unknown ``method``, no activation quantizer in ``model``, or no batch.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    quantizers = activation_quantizers(model)
    if not quantizers:
        raise ValueError("the model has no ActivationFakeQuantize: build it with quantized_copy first")
    model.eval()
    saved = {}
    for name, q in quantizers.items():
        ema = q.activation_post_process
        kwargs = dict(dtype=ema.dtype, qscheme=ema.qscheme, quant_min=ema.quant_min, quant_max=ema.quant_max)
        observer = MinMaxObserver(**kwargs) if method == "minmax" else PercentileObserver(percentile, **kwargs)
        saved[name] = (ema, bool(q.fake_quant_enabled[0]))
        q.activation_post_process = observer.to(q.scale.device)
        q.calibrating = True
        q.disable_fake_quant()  # observe the float activations of the whole network
    seen = 0
    try:
        for images in batches:
            model(normalize(images) if normalize is not None else images)
            seen += 1
    finally:
        for name, q in quantizers.items():
            observer, (ema, fake_quant) = q.activation_post_process, saved[name]
            q.activation_post_process, q.calibrating = ema, False
            q.enable_fake_quant(fake_quant)
            if seen:
                ema.min_val.copy_(observer.min_val.reshape(ema.min_val.shape))
                ema.max_val.copy_(observer.max_val.reshape(ema.max_val.shape))
                q.load_range()
    if not seen:
        raise ValueError("calibrate got no batch")
    return {name: (float(q.range[0]), float(q.range[1])) for name, q in quantizers.items()}
