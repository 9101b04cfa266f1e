"""Op: the fused BatchNorm-statistics loss in Triton (forward and backward).

Same loss as ``bn_stats.bn_stats_loss_reference`` (DeepInversion, Yin et al., CVPR 2020, Eq. 4;
NAYER, Tran et al., CVPR 2024, Eq. 3, ``L_BN``) for one teacher BatchNorm layer with input x of
shape (N, C, H, W) and M = N * H * W elements per channel:

    mu_c  = 1/M sum_{n,h,w} x[n,c,h,w]          var_c = 1/M sum_{n,h,w} (x[n,c,h,w] - mu_c)^2
    mu_cmp = (1 - m) mu + m mu_ema              var_cmp = (1 - m) var + m var_ema   (m = 0 without EMA)
    L = || var_run - var_cmp ||_2 + || mu_run - mu_cmp ||_2

and its gradient, one elementwise pass over x:

    dL/dx[n,c,h,w] = g * (1 - m) * ( a_c * 2 (x[n,c,h,w] - mu_c) / M + b_c / M )
    a_c = -(var_run_c - var_cmp_c) / ||var_run - var_cmp||,  b_c = -(mu_run_c - mu_cmp_c) / ||mu_run - mu_cmp||

with g the upstream gradient of L, and a (resp. b) set to 0 where its norm is 0 (torch's convention
for the gradient of a norm at 0).

Kernels (the tiling and the partial-statistics kernel are shared with the partial-sums op, in
``bn_tiles_triton``):
  _bn_partial_stats_kernel  (bn_tiles_triton) one read of x: per (tile row, channel) count, mean and
                            centred M2 of x - K_c in fp32, K_c = x[0, c, 0].
  _bn_combine_kernel        finalize stage 1, only when there are more than FINALIZE_BLOCK_P partial
                            rows P: a 2-D grid (channel blocks x G row groups) combines each group
                            of rows (Chan et al. parallel variance) into one row of a (G, C) table,
                            G <= FINALIZE_BLOCK_P (``finalize_plan``).
  _bn_finalize_kernel       stage 2 (grid: channel blocks): combines the remaining rows per channel
                            the same way, adds K back, blends with the EMA and writes mean, var,
                            mu_run - mu_cmp and var_run - var_cmp.
  (``_combine_rows``, a jit helper, is the row combine of both stages.)
  _bn_backward_kernel       dL/dx in one elementwise pass (reads x, writes dx).
The two norms and their sum are three tiny torch ops on (C,) vectors.

dx has x's layout (NCHW, channels_last, any strided input; see ``bn_tiles_triton``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from .bn_tiles_triton import (
    TilePartials,
    channel_vector,
    check_device,
    launch_tile_backward,
    partial_stats,
    store_affine_tiles,
    tile_coords,
    validate_input,
)

__all__ = ["BNStatsLossFunction", "bn_stats_loss_triton"]

# The finalize: a (P, C) table of partial statistics -> per-channel mean and var. Both stages loop
# over rows in steps of FINALIZE_BLOCK_P, on FINALIZE_BLOCK_C channels per program.
FINALIZE_BLOCK_C = 32
FINALIZE_BLOCK_P = 64


@triton.jit
def _combine_rows(
    pcount_ptr, pmean_ptr, pm2_ptr, p_lo, p_hi, C, c, c_mask, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr
):
    """Chan et al.'s parallel variance over rows [p_lo, p_hi) of (count (P,), mean (P, C), M2 (P, C)):
    (count (scalar), mean (BLOCK_C,), M2 (BLOCK_C,)) of their union, means relative to the shift K."""
    # Pass 1: n = sum_p count_p, mean = sum_p count_p mean_p / n.
    cnt_acc = tl.zeros([BLOCK_P], dtype=tl.float32)
    total = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(p_lo, p_hi, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        p_mask = p < p_hi
        cnt = tl.load(pcount_ptr + p, mask=p_mask, other=0.0)
        mu = tl.load(pmean_ptr + p[:, None] * C + c[None, :], mask=p_mask[:, None] & c_mask[None, :], other=0.0)
        cnt_acc += cnt
        total += tl.sum(cnt[:, None] * mu, axis=0)
    count = tl.sum(cnt_acc, axis=0)
    mean = total / count
    # Pass 2: M2 = sum_p [ M2_p + count_p (mean_p - mean)^2 ].
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(p_lo, p_hi, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        p_mask = p < p_hi
        mask = p_mask[:, None] & c_mask[None, :]
        cnt = tl.load(pcount_ptr + p, mask=p_mask, other=0.0)
        mu = tl.load(pmean_ptr + p[:, None] * C + c[None, :], mask=mask, other=0.0)
        m2p = tl.load(pm2_ptr + p[:, None] * C + c[None, :], mask=mask, other=0.0)
        d = mu - mean[None, :]
        m2 += tl.sum(tl.where(mask, m2p + cnt[:, None] * d * d, 0.0), axis=0)
    return count, mean, m2


@triton.jit
def _bn_combine_kernel(
    pcount_ptr, pmean_ptr, pm2_ptr, P, C, rows_per_group, gcount_ptr, gmean_ptr, gm2_ptr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # Stage 1 of the finalize, grid (channel blocks, groups): group g's rows -> one row of (G, C).
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    g = tl.program_id(1)
    p_lo = g * rows_per_group
    count, mean, m2 = _combine_rows(
        pcount_ptr, pmean_ptr, pm2_ptr, p_lo, tl.minimum(p_lo + rows_per_group, P), C, c, c_mask, BLOCK_P, BLOCK_C
    )
    tl.store(gmean_ptr + g * C + c, mean, mask=c_mask)
    tl.store(gm2_ptr + g * C + c, m2, mask=c_mask)
    if tl.program_id(0) == 0:
        tl.store(gcount_ptr + g, count)


@triton.jit
def _bn_finalize_kernel(
    shift_ptr, pcount_ptr, pmean_ptr, pm2_ptr, P, C,
    running_mean_ptr, running_var_ptr, ema_mean_ptr, ema_var_ptr, momentum,
    mean_ptr, var_ptr, diff_mean_ptr, diff_var_ptr,
    HAS_EMA: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    # Stage 2, grid (channel blocks,): all P rows -> mean, var, mu_run - mu_cmp, var_run - var_cmp.
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    count, shifted_mean, m2 = _combine_rows(pcount_ptr, pmean_ptr, pm2_ptr, 0, P, C, c, c_mask, BLOCK_P, BLOCK_C)
    var = m2 / count
    mean = tl.load(shift_ptr + c, mask=c_mask, other=0.0) + shifted_mean

    mean_cmp = mean
    var_cmp = var
    if HAS_EMA:
        ema_mean = tl.load(ema_mean_ptr + c, mask=c_mask, other=0.0)
        ema_var = tl.load(ema_var_ptr + c, mask=c_mask, other=0.0)
        mean_cmp = (1.0 - momentum) * mean + momentum * ema_mean
        var_cmp = (1.0 - momentum) * var + momentum * ema_var
    running_mean = tl.load(running_mean_ptr + c, mask=c_mask, other=0.0)
    running_var = tl.load(running_var_ptr + c, mask=c_mask, other=0.0)
    tl.store(mean_ptr + c, mean, mask=c_mask)
    tl.store(var_ptr + c, var, mask=c_mask)
    tl.store(diff_mean_ptr + c, running_mean - mean_cmp, mask=c_mask)
    tl.store(diff_var_ptr + c, running_var - var_cmp, mask=c_mask)


def finalize_plan(rows: int) -> tuple[int, int]:
    """(rows_per_group, groups) of the finalize's stage 1 for ``rows`` partial rows; (rows, 1) when one
    stage suffices (rows <= FINALIZE_BLOCK_P). Groups are whole multiples of FINALIZE_BLOCK_P rows and
    at most FINALIZE_BLOCK_P of them, so stage 2 reads its rows in one step."""
    if rows <= FINALIZE_BLOCK_P:
        return rows, 1
    rows_per_group = FINALIZE_BLOCK_P * triton.cdiv(rows, FINALIZE_BLOCK_P * FINALIZE_BLOCK_P)
    return rows_per_group, triton.cdiv(rows, rows_per_group)


def _combine_groups(parts: TilePartials) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 1: the (P, C) partials -> (G, C) group statistics (count (G,), mean, M2), P > FINALIZE_BLOCK_P;
    the partials themselves otherwise."""
    rows, c = parts.mean.shape
    rows_per_group, groups = finalize_plan(rows)
    if groups == 1:
        return parts.count, parts.mean, parts.m2
    gcount = torch.empty(groups, device=parts.mean.device, dtype=torch.float32)
    gmean, gm2 = torch.empty_like(parts.mean[:groups]), torch.empty_like(parts.m2[:groups])
    _bn_combine_kernel[(triton.cdiv(c, FINALIZE_BLOCK_C), groups)](
        parts.count, parts.mean, parts.m2, rows, c, rows_per_group, gcount, gmean, gm2,
        BLOCK_P=FINALIZE_BLOCK_P, BLOCK_C=FINALIZE_BLOCK_C,
    )  # fmt: skip
    return gcount, gmean, gm2


@triton.jit
def _bn_backward_kernel(
    x_ptr, dx_ptr, mean_ptr, diff_mean_ptr, diff_var_ptr, norms_ptr, grad_ptr,
    N, C, S, sx_n, sx_c, sx_s, sd_n, sd_c, sd_s, n_per_program, num_s_blocks, num_c_blocks,
    var_scale, mean_scale, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    c, s, c_mask, tile_mask, s_blk, n_blk = tile_coords(
        tl.program_id(0), num_c_blocks, num_s_blocks, C, S, BLOCK_C, BLOCK_S
    )
    # Per-channel coefficients: dx = a_c * (x - mean_c) + b_c (a_c, b_c include g, (1 - m) and 1/M).
    g = tl.load(grad_ptr).to(tl.float32)
    norm_var = tl.load(norms_ptr)
    norm_mean = tl.load(norms_ptr + 1)
    inv_norm_var = tl.where(norm_var > 0, 1.0 / tl.where(norm_var > 0, norm_var, 1.0), 0.0)
    inv_norm_mean = tl.where(norm_mean > 0, 1.0 / tl.where(norm_mean > 0, norm_mean, 1.0), 0.0)
    mean = tl.load(mean_ptr + c, mask=c_mask, other=0.0)
    a = -g * var_scale * inv_norm_var * tl.load(diff_var_ptr + c, mask=c_mask, other=0.0)
    b = -g * mean_scale * inv_norm_mean * tl.load(diff_mean_ptr + c, mask=c_mask, other=0.0)
    store_affine_tiles(
        x_ptr,
        dx_ptr,
        a,
        b,
        mean,
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


class BNStatsLossFunction(torch.autograd.Function):
    """autograd.Function of the fused BN-statistics loss; use ``bn_stats_loss_triton``.

    forward(x, running_mean, running_var, ema_mean, ema_var, momentum) -> (loss, mean, var);
    only ``loss`` is differentiable (w.r.t. x only: the buffers and the EMA are constants).
    """

    @staticmethod
    def forward(ctx, x, running_mean, running_var, ema_mean, ema_var, momentum):
        parts = partial_stats(x)
        dev, c = x.device, x.shape[1]
        f32 = {"device": dev, "dtype": torch.float32}
        has_ema = ema_mean is not None and ema_var is not None and momentum > 0
        m = float(momentum) if has_ema else 0.0
        running_mean, running_var = channel_vector(running_mean, dev), channel_vector(running_var, dev)
        ema_mean = channel_vector(ema_mean, dev) if has_ema else running_mean  # dummy pointer when unused
        ema_var = channel_vector(ema_var, dev) if has_ema else running_var
        mean, var = torch.empty(c, **f32), torch.empty(c, **f32)
        diff_mean, diff_var = torch.empty(c, **f32), torch.empty(c, **f32)
        count, rel_mean, m2 = _combine_groups(parts)
        _bn_finalize_kernel[(triton.cdiv(c, FINALIZE_BLOCK_C),)](
            parts.shift, count, rel_mean, m2, count.numel(), c, running_mean, running_var, ema_mean, ema_var, m,
            mean, var, diff_mean, diff_var,
            HAS_EMA=has_ema, BLOCK_P=FINALIZE_BLOCK_P, BLOCK_C=FINALIZE_BLOCK_C,
        )  # fmt: skip
        # norms = (||var_run - var_cmp||, ||mu_run - mu_cmp||): (2,) float32; loss = their sum.
        norms = torch.linalg.vector_norm(torch.stack((diff_var, diff_mean)), dim=1)
        loss = norms.sum()

        ctx.save_for_backward(x, mean, diff_mean, diff_var, norms)
        ctx.momentum = m
        ctx.mark_non_differentiable(mean, var)
        return loss, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, grad_mean, grad_var):
        x, mean, diff_mean, diff_var, norms = ctx.saved_tensors
        total = x.numel() // x.shape[1]
        dx = launch_tile_backward(
            _bn_backward_kernel,
            x,
            (mean, diff_mean, diff_var, norms, grad_loss.reshape(1).float()),
            ((1.0 - ctx.momentum) * 2.0 / total, (1.0 - ctx.momentum) / total),
        )
        return dx, None, None, None, None, None


def bn_stats_loss_triton(
    x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
    ema_mean: torch.Tensor | None = None, ema_var: torch.Tensor | None = None, momentum: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """BN-statistics loss of one layer, fused Triton kernels (same contract as the reference).

    L = ||var_run - var_cmp||_2 + ||mu_run - mu_cmp||_2 (DeepInversion Eq. 4, NAYER Eq. 3), with
    (mu_cmp, var_cmp) the batch statistics blended with the EMA when ``ema_mean``/``ema_var`` are
    given and ``momentum`` > 0 (see the module docstring for the equations and the gradient).

    Args:
        x: layer input (N, C, H, W), (N, C, L) or (N, C); float32, bfloat16 or float16 (float64 is
            read as well); contiguous, channels_last or any strided layout. CUDA tensor, or CPU
            tensor under TRITON_INTERPRET=1. Statistics are accumulated in float32.
        running_mean, running_var: the layer's buffers, (C,); constants (no gradient).
        ema_mean, ema_var: EMA of earlier batches' statistics, (C,), or None; constants.
        momentum: blend factor m in [0, 1) (NAYER's ``bn_mmt``).

    Returns:
        (loss, mean, var): loss is a float32 scalar tensor differentiable w.r.t. x (dL/dx has x's
        dtype and layout); mean and var (C,) float32 are the batch's per-channel mean and biased
        variance, returned *detached* (they are only used as EMA state, see ``update_ema``), as
        by the reference.

    Raises:
        ValueError: for fewer than 2 dims, an empty or non-floating input, or a channel count
            different from the buffers'.
        RuntimeError: for a CPU tensor when triton is not in interpreter mode.
    """
    validate_input(x, running_mean, running_var)
    check_device(x)
    return BNStatsLossFunction.apply(x, running_mean, running_var, ema_mean, ema_var, float(momentum))
