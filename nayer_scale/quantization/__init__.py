"""Data-free quantization (NAYER, CVPR 2024, Table 3): a fake-quantized copy of the teacher as the
student (``fake_quant``), PTQ calibration (``calibrate``), integer export and its loader
(``export``), and the baselines of the comparison (``baselines``)."""

from .calibrate import calibrate
from .export import export_quantized, load_quantized
from .fake_quant import (
    QUANTIZATION_PATTERN,
    ActivationFakeQuantize,
    PercentileObserver,
    QuantConv2d,
    QuantLinear,
    QuantSpec,
    WeightFakeQuantize,
    activation_quantizers,
    fold_batchnorm,
    parse_quantization,
    quantized_copy,
    quantized_layers,
)
from .student import quant_spec, quantized_student

__all__ = [
    "QUANTIZATION_PATTERN",
    "ActivationFakeQuantize",
    "PercentileObserver",
    "QuantConv2d",
    "QuantLinear",
    "QuantSpec",
    "WeightFakeQuantize",
    "activation_quantizers",
    "calibrate",
    "export_quantized",
    "fold_batchnorm",
    "load_quantized",
    "parse_quantization",
    "quant_spec",
    "quantized_copy",
    "quantized_layers",
    "quantized_student",
]
