"""Collectives over the processes of a run: one module for every cross-process reduction.

- ``Collectives``: the trainer's bookkeeping over accelerate's process group (sum, in-place mean,
  the fraction of two summed counts, list gather); no-ops on one process.
- ``global_sum``: an autograd-aware sum for losses that every process computes on global
  quantities (synthesis.bn_stats_scope=global).

``global_sum(t)``: forward, the sum of ``t`` over all processes (one ``torch.distributed``
all-reduce); backward, the identity. The identity is the right backward when every process goes
on to compute the SAME function L of the global sum S = sum_p t_p (every process computes the
BN-statistics loss on the same all-reduced statistics): process p's gradient is
dL/dt_p = dL/dS * dS/dt_p = dL/dS, which it already holds. Summing the incoming gradients over
processes instead (``torch.distributed.nn.functional.all_reduce``'s backward) would give
N * dL/dS, N times the true gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import gather_object

__all__ = ["Collectives", "GlobalSum", "global_sum", "world_size"]


class Collectives:
    """Sum, mean, fraction and list-gather across the processes of ``accelerator`` (not
    differentiable: for metrics, gradients and bookkeeping)."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (any shape, on the device) summed over all processes."""
        return self.accelerator.reduce(x, reduction="sum")

    def fraction(self, hits: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """sum_p hits_p / sum_p total_p as a float64 device scalar (0 when no process counted
        anything); ``hits`` and ``total`` are int64 device scalars (e.g. images on which student
        and teacher agree, images probed). One collective."""
        counts = self.sum(torch.stack([hits, total]))
        return counts[0].double() / counts[1].clamp(min=1).double()

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


def world_size() -> int:
    """Processes in the default torch.distributed group; 1 when none is initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalSum(torch.autograd.Function):
    """sum over processes in forward, identity in backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def global_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all processes of the default group, differentiable (identity backward).

    Every process must call it at the same point with a tensor of the same shape and dtype. With
    one process (or no process group) it returns ``tensor`` itself, at no cost.

    Args:
        tensor: any shape; float32 for the BN statistics (gloo and NCCL both reduce it).
    Returns:
        a tensor of the same shape and dtype: sum_p tensor_p.
    """
    if world_size() == 1:
        return tensor
    return GlobalSum.apply(tensor)
