"""Fused BatchNorm-statistics loss in Triton (forward and backward).

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

Kernels (one file per op, Liger-Kernel style):
  _bn_partial_stats_kernel  one read of x: per-(channel, tile) count, mean and centred M2 in fp32.
                            Everything is taken of x - K_c with the shift K_c = x[0, c, 0, 0] (a
                            sample of the data, so |mean - K| is of the order of the standard
                            deviation): M2 = sum_sq - sum^2 / count then loses almost nothing to
                            cancellation even when |mean| >> std, and the partial means keep their
                            precision (they are small numbers, not ~mean).
  _bn_finalize_kernel       combines the partials per channel (Chan et al. parallel variance),
                            adds K back, blends with the EMA and writes mean, var,
                            mu_run - mu_cmp and var_run - var_cmp.
  _bn_backward_kernel       dL/dx in one elementwise pass (reads x, writes dx).
Global BN statistics (``synthesis.bn_stats_scope=global``) split the same work across processes:
  _bn_partial_stats_kernel  with GIVEN_SHIFT: K_c read from a (C,) input (the running mean, equal on
                            every process) instead of x[0, c, 0]; the tiles are then combined into
                            S1 = sum (x - K), S2 = sum (x - K)^2 per channel (``bn_partial_sums_triton``),
                            all-reduced with every other layer's, and finalized in torch on (C,)
                            vectors (``bn_stats.bn_stats_loss_from_sums``).
  _bn_sums_backward_kernel  dL/dx = dL/dS1 + 2 dL/dS2 (x - K) in one elementwise pass.
The two norms and their sum are three tiny torch ops on (C,) vectors.

Memory formats: x is addressed as (N, C, S) with S = H * W through its strides, so contiguous NCHW,
channels_last (NHWC, C contiguous), 3-D (N, C, L) and 2-D (N, C) inputs all work without a copy; a
layout whose H and W cannot be merged into one stride is copied once. dx has x's layout.

Triton on a CPU machine: importing this module works (``import triton`` needs no GPU), launching needs
CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 set *before* triton is first imported.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

__all__ = ["BNPartialSumsFunction", "BNStatsLossFunction", "bn_partial_sums_triton", "bn_stats_loss_triton"]

# Launch heuristics (module constants so that tests can shrink them to cover multi-block paths).
TILE_ELEMENTS = 2048  # elements of x per (channel-block x spatial-block) tile and loop iteration
MAX_BLOCK_C = 64  # channels per tile
MAX_BLOCK_S = 1024  # spatial positions per tile (NCHW-like layouts)
TARGET_PROGRAMS = 2048  # aim for about this many programs (~16 per SM on an H100)
MAX_N_PER_PROGRAM = 32  # samples (n) looped over inside one program
FINALIZE_BLOCK_C = 32
FINALIZE_BLOCK_P = 64


@triton.jit
def _bn_partial_stats_kernel(
    x_ptr,
    shift_ptr,
    pcount_ptr,
    pmean_ptr,
    pm2_ptr,
    N,
    C,
    S,
    stride_n,
    stride_c,
    stride_s,
    n_per_program,
    num_s_blocks,
    num_c_blocks,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    GIVEN_SHIFT: tl.constexpr = False,
):
    pid = tl.program_id(0)
    c_blk = pid % num_c_blocks
    rest = pid // num_c_blocks
    s_blk = rest % num_s_blocks
    n_blk = rest // num_s_blocks

    c = c_blk * BLOCK_C + tl.arange(0, BLOCK_C)
    s = s_blk * BLOCK_S + tl.arange(0, BLOCK_S)
    c_mask = c < C
    tile_mask = c_mask[:, None] & (s < S)[None, :]
    tile_offs = c[:, None].to(tl.int64) * stride_c + s[None, :].to(tl.int64) * stride_s
    n0 = n_blk * n_per_program

    # Shift K_c = x[0, c, 0]: the same for every program, so the partials combine in shifted units.
    # GIVEN_SHIFT: K is read from shift_ptr instead (the same on every process: global BN statistics).
    if GIVEN_SHIFT:
        shift = tl.load(shift_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    else:
        shift = tl.load(x_ptr + c.to(tl.int64) * stride_c, mask=c_mask, other=0.0).to(tl.float32)

    acc = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    acc_sq = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    for i in range(0, n_per_program):
        n = n0 + i
        mask = tile_mask & (n < N)
        xv = tl.load(x_ptr + n.to(tl.int64) * stride_n + tile_offs, mask=mask, other=0.0).to(tl.float32)
        d = tl.where(mask, xv - shift[:, None], 0.0)
        acc += d
        acc_sq += d * d

    n_valid = tl.minimum(n_per_program, N - n0)
    s_valid = tl.minimum(BLOCK_S, S - s_blk * BLOCK_S)
    count = (n_valid * s_valid).to(tl.float32)
    total = tl.sum(acc, axis=1)
    local_mean = total / count
    m2 = tl.maximum(tl.sum(acc_sq, axis=1) - total * local_mean, 0.0)

    row = n_blk * num_s_blocks + s_blk
    tl.store(pmean_ptr + row * C + c, local_mean, mask=c_mask)  # relative to the shift
    tl.store(pm2_ptr + row * C + c, m2, mask=c_mask)
    if c_blk == 0:
        tl.store(pcount_ptr + row, count)
    if not GIVEN_SHIFT:
        if row == 0:
            tl.store(shift_ptr + c, shift, mask=c_mask)


@triton.jit
def _bn_finalize_kernel(
    shift_ptr,
    pcount_ptr,
    pmean_ptr,
    pm2_ptr,
    P,
    C,
    inv_m,
    running_mean_ptr,
    running_var_ptr,
    ema_mean_ptr,
    ema_var_ptr,
    momentum,
    mean_ptr,
    var_ptr,
    diff_mean_ptr,
    diff_var_ptr,
    HAS_EMA: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C

    # Pass 1: mean - K = sum_p count_p * mean_p / M (partial means relative to the shift K).
    total = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(0, P, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        p_mask = p < P
        mask = p_mask[:, None] & c_mask[None, :]
        cnt = tl.load(pcount_ptr + p, mask=p_mask, other=0.0)
        mu = tl.load(pmean_ptr + p[:, None] * C + c[None, :], mask=mask, other=0.0)
        total += tl.sum(cnt[:, None] * mu, axis=0)
    shifted_mean = total * inv_m

    # Pass 2 (Chan et al.): M2 = sum_p [ M2_p + count_p * (mean_p - mean)^2 ].
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(0, P, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        p_mask = p < P
        mask = p_mask[:, None] & c_mask[None, :]
        cnt = tl.load(pcount_ptr + p, mask=p_mask, other=0.0)
        mu = tl.load(pmean_ptr + p[:, None] * C + c[None, :], mask=mask, other=0.0)
        m2p = tl.load(pm2_ptr + p[:, None] * C + c[None, :], mask=mask, other=0.0)
        d = mu - shifted_mean[None, :]
        m2 += tl.sum(tl.where(mask, m2p + cnt[:, None] * d * d, 0.0), axis=0)
    var = m2 * inv_m
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


@triton.jit
def _bn_backward_kernel(
    x_ptr,
    dx_ptr,
    mean_ptr,
    diff_mean_ptr,
    diff_var_ptr,
    norms_ptr,
    grad_ptr,
    N,
    C,
    S,
    sx_n,
    sx_c,
    sx_s,
    sd_n,
    sd_c,
    sd_s,
    n_per_program,
    num_s_blocks,
    num_c_blocks,
    var_scale,
    mean_scale,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    pid = tl.program_id(0)
    c_blk = pid % num_c_blocks
    rest = pid // num_c_blocks
    s_blk = rest % num_s_blocks
    n_blk = rest // num_s_blocks

    c = c_blk * BLOCK_C + tl.arange(0, BLOCK_C)
    s = s_blk * BLOCK_S + tl.arange(0, BLOCK_S)
    c_mask = c < C
    tile_mask = c_mask[:, None] & (s < S)[None, :]

    # Per-channel coefficients: dx = a_c * (x - mean_c) + b_c (a_c, b_c include g, (1 - m) and 1/M).
    g = tl.load(grad_ptr).to(tl.float32)
    norm_var = tl.load(norms_ptr)
    norm_mean = tl.load(norms_ptr + 1)
    inv_norm_var = tl.where(norm_var > 0, 1.0 / tl.where(norm_var > 0, norm_var, 1.0), 0.0)
    inv_norm_mean = tl.where(norm_mean > 0, 1.0 / tl.where(norm_mean > 0, norm_mean, 1.0), 0.0)
    mean = tl.load(mean_ptr + c, mask=c_mask, other=0.0)
    a = -g * var_scale * inv_norm_var * tl.load(diff_var_ptr + c, mask=c_mask, other=0.0)
    b = -g * mean_scale * inv_norm_mean * tl.load(diff_mean_ptr + c, mask=c_mask, other=0.0)

    x_offs = c[:, None].to(tl.int64) * sx_c + s[None, :].to(tl.int64) * sx_s
    d_offs = c[:, None].to(tl.int64) * sd_c + s[None, :].to(tl.int64) * sd_s
    n0 = n_blk * n_per_program
    for i in range(0, n_per_program):
        n = n0 + i
        mask = tile_mask & (n < N)
        xv = tl.load(x_ptr + n.to(tl.int64) * sx_n + x_offs, mask=mask, other=0.0).to(tl.float32)
        dx = a[:, None] * (xv - mean[:, None]) + b[:, None]
        tl.store(dx_ptr + n.to(tl.int64) * sd_n + d_offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bn_sums_backward_kernel(
    x_ptr,
    dx_ptr,
    shift_ptr,
    grad_s1_ptr,
    grad_s2_ptr,
    N,
    C,
    S,
    sx_n,
    sx_c,
    sx_s,
    sd_n,
    sd_c,
    sd_s,
    n_per_program,
    num_s_blocks,
    num_c_blocks,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    # dx = dL/dS1_c + 2 dL/dS2_c (x - K_c): the backward of the shifted partial sums, one pass.
    pid = tl.program_id(0)
    c_blk = pid % num_c_blocks
    rest = pid // num_c_blocks
    s_blk = rest % num_s_blocks
    n_blk = rest // num_s_blocks

    c = c_blk * BLOCK_C + tl.arange(0, BLOCK_C)
    s = s_blk * BLOCK_S + tl.arange(0, BLOCK_S)
    c_mask = c < C
    tile_mask = c_mask[:, None] & (s < S)[None, :]
    shift = tl.load(shift_ptr + c, mask=c_mask, other=0.0)
    a = tl.load(grad_s1_ptr + c, mask=c_mask, other=0.0)
    b = 2.0 * tl.load(grad_s2_ptr + c, mask=c_mask, other=0.0)

    x_offs = c[:, None].to(tl.int64) * sx_c + s[None, :].to(tl.int64) * sx_s
    d_offs = c[:, None].to(tl.int64) * sd_c + s[None, :].to(tl.int64) * sd_s
    n0 = n_blk * n_per_program
    for i in range(0, n_per_program):
        n = n0 + i
        mask = tile_mask & (n < N)
        xv = tl.load(x_ptr + n.to(tl.int64) * sx_n + x_offs, mask=mask, other=0.0).to(tl.float32)
        dx = b[:, None] * (xv - shift[:, None]) + a[:, None]
        tl.store(dx_ptr + n.to(tl.int64) * sd_n + d_offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _as_ncs(x: torch.Tensor) -> torch.Tensor:
    """View x (N, C, *spatial) as (N, C, S); a copy only when the spatial dims cannot be merged."""
    if x.dim() == 2:
        return x.unsqueeze(-1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def _launch_config(x3: torch.Tensor) -> dict:
    """Tile sizes and grid for x3 (N, C, S): coalesced along whichever of C or S has stride 1."""
    n, c, s = x3.shape
    _, stride_c, stride_s = x3.stride()
    if stride_c == 1 and stride_s != 1 and s > 1:  # channels_last: C contiguous
        block_c = min(_next_pow2(c), MAX_BLOCK_C)
        block_s = min(_next_pow2(s), max(1, TILE_ELEMENTS // block_c))
    else:  # NCHW-like: S contiguous (or C == 1 / S == 1)
        block_s = min(_next_pow2(s), MAX_BLOCK_S)
        block_c = min(_next_pow2(c), max(1, TILE_ELEMENTS // block_s), MAX_BLOCK_C)
    num_c_blocks = triton.cdiv(c, block_c)
    num_s_blocks = triton.cdiv(s, block_s)
    tiles = num_c_blocks * num_s_blocks
    n_per_program = max(1, min(MAX_N_PER_PROGRAM, (n * tiles) // TARGET_PROGRAMS))
    num_n_blocks = triton.cdiv(n, n_per_program)
    return {
        "BLOCK_C": block_c,
        "BLOCK_S": block_s,
        "num_c_blocks": num_c_blocks,
        "num_s_blocks": num_s_blocks,
        "n_per_program": n_per_program,
        "num_rows": num_n_blocks * num_s_blocks,  # partial-statistics rows per channel
        "grid": (num_c_blocks * num_s_blocks * num_n_blocks,),
        "num_warps": 8 if block_c * block_s >= 4096 else 4,
    }


def _check_device(x: torch.Tensor) -> None:
    from triton.runtime.interpreter import InterpretedFunction

    if x.device.type != "cuda" and not isinstance(_bn_partial_stats_kernel, InterpretedFunction):
        raise RuntimeError(
            f"the Triton BN-statistics kernel got a {x.device.type} tensor: it needs CUDA tensors, or "
            "TRITON_INTERPRET=1 set before triton is first imported (CPU interpreter, for tests); "
            "use backend='reference' on CPU"
        )


def _validate(x, running_mean, running_var) -> None:
    if x.dim() < 2:
        raise ValueError(f"BN-statistics loss expects (N, C, ...) input, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"BN-statistics loss expects a floating-point input, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"BN-statistics loss got an empty input of shape {tuple(x.shape)}")
    channels = x.shape[1]
    if running_mean.numel() != channels or running_var.numel() != channels:
        raise ValueError(
            f"input has {channels} channels but the BatchNorm buffers have {running_mean.numel()}"
        )


def _vec(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(C,) float32 contiguous on ``device`` (no copy when it already is)."""
    return t.detach().reshape(-1).to(device=device, dtype=torch.float32).contiguous()


class BNStatsLossFunction(torch.autograd.Function):
    """autograd.Function of the fused BN-statistics loss; use ``bn_stats_loss_triton``.

    forward(x, running_mean, running_var, ema_mean, ema_var, momentum) -> (loss, mean, var);
    only ``loss`` is differentiable (w.r.t. x only: the buffers and the EMA are constants).
    """

    @staticmethod
    def forward(ctx, x, running_mean, running_var, ema_mean, ema_var, momentum):
        x3 = _as_ncs(x)
        n, c, s = x3.shape
        cfg = _launch_config(x3)
        dev = x.device
        f32 = {"device": dev, "dtype": torch.float32}
        shift = torch.empty(c, **f32)
        pcount = torch.empty(cfg["num_rows"], **f32)
        pmean = torch.empty(cfg["num_rows"], c, **f32)
        pm2 = torch.empty(cfg["num_rows"], c, **f32)
        _bn_partial_stats_kernel[cfg["grid"]](
            x3, shift, pcount, pmean, pm2, n, c, s, *x3.stride(),
            cfg["n_per_program"], cfg["num_s_blocks"], cfg["num_c_blocks"],
            BLOCK_C=cfg["BLOCK_C"], BLOCK_S=cfg["BLOCK_S"], num_warps=cfg["num_warps"],
        )  # fmt: skip

        has_ema = ema_mean is not None and ema_var is not None and momentum > 0
        m = float(momentum) if has_ema else 0.0
        running_mean, running_var = _vec(running_mean, dev), _vec(running_var, dev)
        ema_mean = _vec(ema_mean, dev) if has_ema else running_mean  # dummy pointer when unused
        ema_var = _vec(ema_var, dev) if has_ema else running_var
        mean, var = torch.empty(c, **f32), torch.empty(c, **f32)
        diff_mean, diff_var = torch.empty(c, **f32), torch.empty(c, **f32)
        _bn_finalize_kernel[(triton.cdiv(c, FINALIZE_BLOCK_C),)](
            shift, pcount, pmean, pm2, cfg["num_rows"], c, 1.0 / (n * s),
            running_mean, running_var, ema_mean, ema_var, m,
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
        x3 = _as_ncs(x)
        n, c, s = x3.shape
        cfg = _launch_config(x3)
        dx3 = torch.empty_like(x3)
        total = n * s
        _bn_backward_kernel[cfg["grid"]](
            x3, dx3, mean, diff_mean, diff_var, norms, grad_loss.reshape(1).float(),
            n, c, s, *x3.stride(), *dx3.stride(),
            cfg["n_per_program"], cfg["num_s_blocks"], cfg["num_c_blocks"],
            (1.0 - ctx.momentum) * 2.0 / total, (1.0 - ctx.momentum) / total,
            BLOCK_C=cfg["BLOCK_C"], BLOCK_S=cfg["BLOCK_S"], num_warps=cfg["num_warps"],
        )  # fmt: skip
        return dx3.view(x.shape), None, None, None, None, None


def bn_stats_loss_triton(
    x: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    ema_mean: torch.Tensor | None = None,
    ema_var: torch.Tensor | None = None,
    momentum: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    _validate(x, running_mean, running_var)
    _check_device(x)
    return BNStatsLossFunction.apply(x, running_mean, running_var, ema_mean, ema_var, float(momentum))


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
        x3 = _as_ncs(x)
        n, c, s = x3.shape
        cfg = _launch_config(x3)
        f32 = {"device": x.device, "dtype": torch.float32}
        shift = _vec(shift, x.device)
        pcount = torch.empty(cfg["num_rows"], **f32)
        pmean = torch.empty(cfg["num_rows"], c, **f32)
        pm2 = torch.empty(cfg["num_rows"], c, **f32)
        _bn_partial_stats_kernel[cfg["grid"]](
            x3, shift, pcount, pmean, pm2, n, c, s, *x3.stride(),
            cfg["n_per_program"], cfg["num_s_blocks"], cfg["num_c_blocks"],
            BLOCK_C=cfg["BLOCK_C"], BLOCK_S=cfg["BLOCK_S"], GIVEN_SHIFT=True, num_warps=cfg["num_warps"],
        )  # fmt: skip
        weighted = pcount[:, None] * pmean
        s1 = weighted.sum(0)
        s2 = (pm2 + weighted * pmean).sum(0)
        ctx.save_for_backward(x, shift)
        return s1, s2

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_s1, grad_s2):
        x, shift = ctx.saved_tensors
        x3 = _as_ncs(x)
        n, c, s = x3.shape
        cfg = _launch_config(x3)
        zeros = torch.zeros_like(shift)
        grad_s1 = zeros if grad_s1 is None else grad_s1.float().contiguous()
        grad_s2 = zeros if grad_s2 is None else grad_s2.float().contiguous()
        dx3 = torch.empty_like(x3)
        _bn_sums_backward_kernel[cfg["grid"]](
            x3, dx3, shift, grad_s1, grad_s2, n, c, s, *x3.stride(), *dx3.stride(),
            cfg["n_per_program"], cfg["num_s_blocks"], cfg["num_c_blocks"],
            BLOCK_C=cfg["BLOCK_C"], BLOCK_S=cfg["BLOCK_S"], num_warps=cfg["num_warps"],
        )  # fmt: skip
        return dx3.view(x.shape), None


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
    _validate(x, shift, shift)
    _check_device(x)
    return BNPartialSumsFunction.apply(x, shift)
