"""Autograd-aware collectives for losses that every process computes on global quantities.

``global_sum(t)``: forward, the sum of ``t`` over all processes (one ``torch.distributed``
all-reduce); backward, the identity. The identity is the right backward when every process goes
on to compute the SAME function L of the global sum S = sum_p t_p (synthesis.bn_stats_scope=global:
every process computes the BN-statistics loss on the same all-reduced statistics): process p's
gradient is dL/dt_p = dL/dS * dS/dt_p = dL/dS, which it already holds. Summing the incoming
gradients over processes instead (``torch.distributed.nn.functional.all_reduce``'s backward) would
give N * dL/dS, N times the true gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["GlobalSum", "global_sum", "world_size"]


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
