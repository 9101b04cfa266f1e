"""The quantized student of a run: ``student.quantization`` bit widths (see ``fake_quant``)."""

from __future__ import annotations

from torch import nn

from .fake_quant import QuantSpec, parse_quantization, quantized_copy

__all__ = ["quant_spec", "quantized_student"]


def quant_spec(student_cfg) -> QuantSpec | None:
    """The QuantSpec of a ``StudentConfig`` (None for a float student: bit widths 0).

    Raises:
        ValueError: bit widths outside 2..8.
    """
    q = student_cfg.quantization
    return parse_quantization(q.name, q.keep_ends_8bit)


def quantized_student(student_cfg, teacher: nn.Module) -> nn.Module:
    """A fake-quantized copy of ``teacher`` (its architecture and current weights, BN folded if
    ``student_cfg.quantization.fold_bn``), the teacher left unchanged; eval mode, activation ranges
    observed from the first training batches on (EMA) or set by ``calibrate``.

    Raises:
        ValueError: ``student_cfg.quantization`` has no bit widths, or bit widths outside 2..8.
    """
    spec = quant_spec(student_cfg)
    if spec is None:
        raise ValueError(
            "student.quantization has no bit widths: build a float student with nayer_scale.models.build_model"
        )
    was_training = teacher.training
    student = quantized_copy(teacher.eval(), spec, fold_bn=student_cfg.quantization.fold_bn)
    teacher.train(was_training)
    return student


def export_student(cfg, student: nn.Module, path, metadata: dict[str, str]) -> dict:
    """``export_quantized`` of a run's trained quantized student (``cfg``: the run's NayerConfig);
    ``metadata`` (e.g. mean, std, class names, config) is added, its keys reserved by the export
    format (arch, num_classes, in_channels) taken from ``cfg`` and ``metadata``. Returns the metadata."""
    from .export import RESERVED_KEYS, export_quantized

    extra = {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
    return export_quantized(
        student,
        path,
        arch=cfg.teacher.arch,
        num_classes=int(metadata["num_classes"]),
        in_channels=cfg.teacher.in_channels,
        spec=quant_spec(cfg.student),
        fold_bn=cfg.student.quantization.fold_bn,
        metadata=extra,
    )
