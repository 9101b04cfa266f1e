"""Top-1 accuracy on real held-out data, summed over processes (the only place a run reads real images).

    evaluator = Evaluator(source, normalize=augment.normalize, precision=precision, device=device,
                          reduce_sum=accelerator.reduce)
    result = evaluator(model)          # EvalResult(top1=0.8887, images=10000)

``SyntheticProbe`` measures a fresh synthesis batch instead: the within-class diversity of the
teacher's features and how often the student agrees with the teacher (no real data involved).

``source`` comes from ``nayer_scale.data.build_eval_source`` (or ``tensor_eval_source``): the
evaluator never knows which dataset it reads. The only host read is one per evaluation, at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .metrics import feature_diversity
from .models import get_classifier
from .precision import Precision

__all__ = ["EvalResult", "Evaluator", "SyntheticProbe"]


@dataclass(frozen=True)
class EvalResult:
    """``top1``: fraction in [0, 1] (None without an evaluation set); ``images``: how many images
    were evaluated over all processes (each once)."""

    top1: float | None
    images: int


class Evaluator:
    """Top-1 of a classifier on an evaluation source.

    Args:
        source: callable returning this process's batches (uint8 (B, C, H, W), int64 (B,)), or None.
        normalize: maps float images in [0, 1] to the model's input (the teacher's mean/std).
        precision: autocast and memory format of the run (``nayer_scale.precision.Precision``).
        device: where the model lives.
        reduce_sum: sums a tensor over processes (``accelerator.reduce(t, "sum")``); None for one process.
        progress: show a progress bar.
    """

    def __init__(
        self,
        source: Callable | None,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        precision: Precision,
        device: torch.device,
        reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: bool = False,
    ) -> None:
        self.source, self.normalize, self.precision = source, normalize, precision
        self.device, self.reduce_sum, self.progress = device, reduce_sum, progress

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> EvalResult:
        """Evaluate ``model`` (put in eval mode, then back in its previous mode)."""
        if self.source is None:
            return EvalResult(None, 0)
        was_training = model.training
        model.eval()
        counts = torch.zeros(2, device=self.device, dtype=torch.long)  # correct, total
        for images, labels in tqdm(
            self.source(), desc="evaluating", unit="batch", leave=False, disable=not self.progress
        ):
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            x = self.normalize(images.float() / 255.0)
            if self.precision.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                counts[0] += (model(x).argmax(1) == labels).sum()
            counts[1] += len(labels)
        model.train(was_training)
        if self.reduce_sum is not None:
            counts = self.reduce_sum(counts)
        correct, total = counts.tolist()  # the one host read
        return EvalResult(correct / max(1, total), total)


class SyntheticProbe:
    """Measures of a synthesis batch: feature diversity and student-teacher agreement.

    Args:
        teacher: the teacher (its classifier's input is captured: the penultimate features).
        normalize: maps images in [0, 1] to the teacher's input.
        precision: the run's precision; batch_size: images per forward; num_classes: K.
    """

    def __init__(
        self,
        teacher: nn.Module,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        precision: Precision,
        batch_size: int,
        num_classes: int,
    ) -> None:
        self.teacher, self.normalize, self.precision = teacher, normalize, precision
        self.batch_size, self.num_classes = batch_size, num_classes

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, student: nn.Module | None
    ) -> tuple[torch.Tensor | None, torch.Tensor, int]:
        """Probe ``images`` (N, C, H, W) float in [0, 1] with pseudo ``labels`` (N,).

        Returns:
            diversity: ``nayer_scale.metrics.feature_diversity`` of the teacher's penultimate
                features (float32 device scalar), None when N <= K (rotating class slices: no class
                twice in the batch);
            agree: int64 device scalar, images the student classifies as the teacher does (argmax);
            count: images probed for agreement (N, or 0 without a student).
        """
        captured = []
        agree = torch.zeros((), dtype=torch.long, device=images.device)
        handle = get_classifier(self.teacher).register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))
        was_training = student.training if student is not None else False
        if student is not None:
            student.eval()
        try:
            for i in range(0, len(labels), self.batch_size):
                x = self.normalize(images[i : i + self.batch_size])
                with self.precision.autocast():
                    teacher_pred = self.teacher(x).argmax(1)
                    if student is not None:
                        agree += (student(x).argmax(1) == teacher_pred).sum()
        finally:
            handle.remove()
            if student is not None:
                student.train(was_training)
        diversity = (
            feature_diversity(torch.cat(captured).flatten(1).float(), labels)
            if len(labels) > self.num_classes
            else None
        )
        return diversity, agree, (len(labels) if student is not None else 0)
