"""Pseudo labels of a synthesis batch: which classes each process synthesises at each step.

Two schemes, chosen by the synthesis batch size B per process and the number of classes K:

- B >= K (CIFAR, Tiny-ImageNet): the published *class-ordered* labels, [0..K-1] repeated B // K
  times, then B % K labels drawn at random (NAYER code; one noisy linear serves each copy of the K
  classes, "K-to-1").
- B < K (ImageNet: 1000 classes do not fit one synthesis batch on one GPU): a *rotating slice*.
  Number the synthesis batches of the whole run, across processes, by a global slot
  ``slot = (batches synthesised by each process before this one) * world_size + rank``; slot s
  covers the B consecutive classes ``(s * B + i) mod K`` for i in [0, B). Consecutive slots tile
  the class circle without gaps or overlaps, so after any n slots every class has been synthesised
  floor(n * B / K) or ceil(n * B / K) times (equally often whenever n * B is a multiple of K), and
  at each step the world_size processes cover world_size * B distinct classes (all of them
  distinct as long as world_size * B <= K). No random draw is involved, so resume is exact.
"""

from __future__ import annotations

import torch

__all__ = ["LabelSampler", "batches_before_epoch", "class_ordered_labels", "rotating_class_slice"]


def batches_before_epoch(epoch: int, warmup_epochs: int, warmup_batches: int, batches: int) -> int:
    """Synthesis batches one process makes in epochs [0, epoch): ``warmup_batches`` per warm-up
    epoch, ``batches`` per later epoch."""
    warm = min(epoch, warmup_epochs)
    return warm * warmup_batches + (epoch - warm) * batches


def rotating_class_slice(
    slot: int, batch_size: int, num_classes: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Labels (batch_size,) int64 of global synthesis slot ``slot``: ``(slot * B + i) mod K``.

    Raises:
        ValueError: negative slot, or batch_size / num_classes < 1.
    """
    if slot < 0 or batch_size < 1 or num_classes < 1:
        raise ValueError(
            f"need slot >= 0 and positive batch_size / num_classes, got {slot}, {batch_size}, {num_classes}"
        )
    start = (slot * batch_size) % num_classes
    return (start + torch.arange(batch_size, device=device)) % num_classes


def class_ordered_labels(
    batch_size: int, num_classes: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Published NAYER labels (batch_size,) int64: [0..K-1] repeated B // K times, then B % K random
    labels drawn from ``generator`` (on ``device``)."""
    extra = torch.randint(num_classes, (batch_size % num_classes,), device=device, generator=generator)
    return torch.cat([torch.arange(num_classes, device=device).repeat(batch_size // num_classes), extra])


class LabelSampler:
    """Pseudo labels of each synthesis batch of one process (the two schemes of the module docstring).

    Args:
        batch_size: B, images per synthesis batch; num_classes: K.
        warmup_epochs, warmup_batches, batches: the synthesis schedule (batches per warm-up / later epoch).
        rank, world_size: this process and the number of processes.
        generator: draws the B % K random labels of the class-ordered scheme (on ``device``).
    """

    def __init__(
        self,
        batch_size: int,
        num_classes: int,
        warmup_epochs: int,
        warmup_batches: int,
        batches: int,
        rank: int,
        world_size: int,
        generator: torch.Generator,
        device: torch.device | str,
    ) -> None:
        self.batch_size, self.num_classes = batch_size, num_classes
        self.schedule = (warmup_epochs, warmup_batches, batches)
        self.rank, self.world_size, self.generator, self.device = rank, world_size, generator, device

    def __call__(self, epoch: int, batch_index: int) -> torch.Tensor:
        """Labels (B,) int64 of synthesis batch ``batch_index`` of ``epoch``: class-ordered copies
        of the K classes when B >= K, otherwise the rotating class slice of global slot (batches
        before this one) * world_size + rank, so that across processes and steps every class is
        synthesised equally often."""
        if self.batch_size >= self.num_classes:
            return class_ordered_labels(self.batch_size, self.num_classes, self.generator, self.device)
        before = batches_before_epoch(epoch, *self.schedule)
        slot = (before + batch_index) * self.world_size + self.rank
        return rotating_class_slice(slot, self.batch_size, self.num_classes, self.device)
