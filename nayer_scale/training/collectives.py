"""The few collectives the trainer needs, over accelerate's process group (no-ops on one process)."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

__all__ = ["Collectives"]


class Collectives:
    """Sum, mean and list-gather across the processes of ``accelerator``."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (any shape, on the device) summed over all processes."""
        return self.accelerator.reduce(x, reduction="sum")

    def average(self, tensors: list[torch.Tensor]) -> None:
        """In place: every tensor becomes its mean over all processes (one collective of their
        concatenation, so the tensors must share a dtype)."""
        flat = self.accelerator.reduce(torch.cat([t.reshape(-1) for t in tensors]), reduction="mean")
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def concat_lists(self, items: list) -> list:
        """Every process's ``items`` (picklable) concatenated in rank order; ``items`` itself on one
        process (no collective then)."""
        if self.accelerator.num_processes == 1:
            return items
        return [x for part in gather_object([items]) for x in part]
