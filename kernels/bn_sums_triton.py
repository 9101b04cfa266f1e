"""Op: the partial BN statistics (S1, S2) of one process's batch in Triton (forward and backward).

Global BN statistics (``synthesis.bn_stats_scope=global``) split the fused loss across processes:
each process computes, per channel c of its layer input x (N, C, H, W),

    S1_c = sum_{n,h,w} (x[n,c,h,w] - K_c),    S2_c = sum_{n,h,w} (x[n,c,h,w] - K_c)^2

with K the given shift (the running mean, equal on every process); the sums of all layers are
all-reduced and finalized in torch on (C,) vectors (``bn_stats.bn_stats_loss_from_sums``). Same
contract as ``bn_stats.bn_partial_sums_reference``.

Kernels:
  _bn_partial_stats_kernel  (bn_tiles_triton, GIVEN_SHIFT) per (tile row, channel) count, mean and
                            centred M2 of x - K; the rows are then combined into S1 = sum_t count_t
                            mean_t and S2 = sum_t (M2_t + count_t mean_t^2) by two torch reductions
                            of the (P, C) partials (S2 from the tiles' centred M2: no tile loses
                            precision).
  _bn_sums_backward_kernel  dL/dx = dL/dS1 + 2 dL/dS2 (x - K) in one elementwise pass.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from .bn_tiles_triton import (
    check_device,
    launch_tile_backward,
    partial_stats,
    store_affine_tiles,
    tile_coords,
    validate_input,
)

__all__ = ["BNPartialSumsFunction", "bn_partial_sums_triton"]


@triton.jit
def _bn_sums_backward_kernel(
    x_ptr, dx_ptr, shift_ptr, grad_s1_ptr, grad_s2_ptr,
    N, C, S, sx_n, sx_c, sx_s, sd_n, sd_c, sd_s, n_per_program, num_s_blocks, num_c_blocks,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    # dx = dL/dS1_c + 2 dL/dS2_c (x - K_c): the backward of the shifted partial sums, one pass.
    c, s, c_mask, tile_mask, s_blk, n_blk = tile_coords(
        tl.program_id(0), num_c_blocks, num_s_blocks, C, S, BLOCK_C, BLOCK_S
    )
    shift = tl.load(shift_ptr + c, mask=c_mask, other=0.0)
    a = tl.load(grad_s1_ptr + c, mask=c_mask, other=0.0)
    b = 2.0 * tl.load(grad_s2_ptr + c, mask=c_mask, other=0.0)
    store_affine_tiles(
        x_ptr,
        dx_ptr,
        b,
        a,
        shift,
        c,
        s,
        tile_mask,
        n_blk * n_per_program,
        N,
        n_per_program,
        sx_n,
        sx_c,
        sx_s,
        sd_n,
        sd_c,
        sd_s,
    )


class BNPartialSumsFunction(torch.autograd.Function):
    """autograd.Function of the partial BN statistics (S1, S2) of one process's batch; use
    ``bn_partial_sums_triton``.

    forward(x, shift) -> (S1, S2): ``_bn_partial_stats_kernel`` with the given shift (per-tile
    count, mean and M2 of x - K), then per channel S1 = sum_t count_t mean_t and
    S2 = sum_t (M2_t + count_t mean_t^2) over the tiles (two torch reductions of the (P, C)
    partials). backward: ``_bn_sums_backward_kernel``, dx = dL/dS1 + 2 dL/dS2 (x - K).
    """

    @staticmethod
    def forward(ctx, x, shift):
        parts = partial_stats(x, shift)
        weighted = parts.count[:, None] * parts.mean
        s1 = weighted.sum(0)
        s2 = (parts.m2 + weighted * parts.mean).sum(0)
        ctx.save_for_backward(x, parts.shift)
        return s1, s2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_s1, grad_s2):
        x, shift = ctx.saved_tensors
        zeros = torch.zeros_like(shift)
        grad_s1 = zeros if grad_s1 is None else grad_s1.float().contiguous()
        grad_s2 = zeros if grad_s2 is None else grad_s2.float().contiguous()
        return launch_tile_backward(_bn_sums_backward_kernel, x, (shift, grad_s1, grad_s2)), None


def bn_partial_sums_triton(x: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Partial BN statistics (S1, S2) of one layer input, Triton kernels (contract of
    ``nayer_kernels.bn_stats.bn_partial_sums_reference``): the split of the fused loss for
    ``synthesis.bn_stats_scope=global`` (partial statistics -> all-reduce -> finalize and backward).

    S1_c = sum (x - K_c), S2_c = sum (x - K_c)^2 over (N, H, W), accumulated in float32 per tile
    and combined over tiles (S2 from the tiles' centred M2, so no tile loses precision).

    Args:
        x: (N, C, H, W), (N, C, L) or (N, C); float32, bfloat16 or float16; any strided layout.
            CUDA tensor, or CPU tensor under TRITON_INTERPRET=1.
        shift: (C,) the shift K, the same on every process (the hooks use the running mean).

    Returns:
        (S1, S2): (C,) float32, differentiable w.r.t. x (dL/dx has x's dtype and layout).

    Raises:
        ValueError: fewer than 2 dims, an empty or non-floating input, a shift that is not (C,).
        RuntimeError: for a CPU tensor when triton is not in interpreter mode.
    """
    validate_input(x, shift, shift)
    check_device(x)
    return BNPartialSumsFunction.apply(x, shift)
