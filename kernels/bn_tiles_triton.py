"""What both BN-statistics Triton ops share: the tiling of x, the partial-statistics kernel, the launches.

Both ops (``bn_loss_triton``: the fused loss; ``bn_sums_triton``: the partial sums of global BN
statistics) read x of shape (N, C, *spatial) as (N, C, S), S = prod(spatial), through its strides,
so contiguous NCHW, channels_last (NHWC, C contiguous), 3-D (N, C, L) and 2-D (N, C) inputs all work
without a copy (a layout whose spatial dims cannot be merged into one stride is copied once). Every
program of the grid owns one tile of BLOCK_C channels x BLOCK_S positions, coalesced along whichever
of C or S has stride 1, and loops over ``n_per_program`` samples; program ids run over
(channel block, spatial block, sample block), channel block fastest.

  tile_coords               (jit) program id -> the tile's channels c, positions s, masks, blocks
  store_affine_tiles        (jit) dx = alpha_c (x - center_c) + beta_c over a program's tile: the one
                            elementwise pass of both backwards (reads x, writes dx in x's dtype)
  _bn_partial_stats_kernel  one read of x: per (tile row, channel) count, mean and centred M2 of
                            x - K_c in fp32. K_c = x[0, c, 0] (a sample of the data, so |mean - K|
                            is of the order of the standard deviation: M2 = sum_sq - sum^2 / count
                            then loses almost nothing to cancellation even when |mean| >> std), or,
                            with GIVEN_SHIFT, K_c read from a (C,) input (global BN statistics: the
                            running mean, equal on every process).
  partial_stats             host: allocate the (P, C) partials and launch that kernel (both forwards)
  launch_tile_backward      host: allocate dx with x's layout and launch an op's backward kernel
  as_ncs, launch_config     host: the (N, C, S) view; tile sizes, grid and rows P of the partials
  check_device, validate_input, channel_vector   host: argument checks and (C,) float32 vectors

Triton on a CPU machine: importing this module works (``import triton`` needs no GPU), launching needs
CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 set *before* triton is first imported and still
set at launch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

__all__ = [
    "TilePartials",
    "as_ncs",
    "channel_vector",
    "check_device",
    "launch_config",
    "launch_tile_backward",
    "partial_stats",
    "store_affine_tiles",
    "tile_coords",
    "validate_input",
]

# Launch heuristics (module constants so that tests can shrink them to cover multi-block paths).
TILE_ELEMENTS = 2048  # elements of x per (channel-block x spatial-block) tile and loop iteration
MAX_BLOCK_C = 64  # channels per tile
MAX_BLOCK_S = 1024  # spatial positions per tile (NCHW-like layouts)
TARGET_PROGRAMS = 2048  # aim for about this many programs (~16 per SM on an H100)
MAX_N_PER_PROGRAM = 32  # samples (n) looped over inside one program


@triton.jit
def tile_coords(pid, num_c_blocks, num_s_blocks, C, S, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """Program ``pid`` -> (c (BLOCK_C,), s (BLOCK_S,), c_mask, tile_mask (BLOCK_C, BLOCK_S), s_blk, n_blk)."""
    c_blk = pid % num_c_blocks
    rest = pid // num_c_blocks
    s_blk = rest % num_s_blocks
    n_blk = rest // num_s_blocks
    c = c_blk * BLOCK_C + tl.arange(0, BLOCK_C)
    s = s_blk * BLOCK_S + tl.arange(0, BLOCK_S)
    c_mask = c < C
    tile_mask = c_mask[:, None] & (s < S)[None, :]
    return c, s, c_mask, tile_mask, s_blk, n_blk


@triton.jit
def store_affine_tiles(
    x_ptr, dx_ptr, alpha, beta, center, c, s, tile_mask, n0, N, n_per_program, sx_n, sx_c, sx_s, sd_n, sd_c, sd_s
):
    """dx[n, c, s] = alpha_c * (x[n, c, s] - center_c) + beta_c for n0 <= n < min(n0 + n_per_program, N)."""
    x_offs = c[:, None].to(tl.int64) * sx_c + s[None, :].to(tl.int64) * sx_s
    d_offs = c[:, None].to(tl.int64) * sd_c + s[None, :].to(tl.int64) * sd_s
    for i in range(0, n_per_program):
        n = n0 + i
        mask = tile_mask & (n < N)
        xv = tl.load(x_ptr + n.to(tl.int64) * sx_n + x_offs, mask=mask, other=0.0).to(tl.float32)
        dx = alpha[:, None] * (xv - center[:, None]) + beta[:, None]
        tl.store(dx_ptr + n.to(tl.int64) * sd_n + d_offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bn_partial_stats_kernel(
    x_ptr, shift_ptr, pcount_ptr, pmean_ptr, pm2_ptr,
    N, C, S, stride_n, stride_c, stride_s, n_per_program, num_s_blocks, num_c_blocks,
    BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, GIVEN_SHIFT: tl.constexpr = False,
):  # fmt: skip
    c, s, c_mask, tile_mask, s_blk, n_blk = tile_coords(
        tl.program_id(0), num_c_blocks, num_s_blocks, C, S, BLOCK_C, BLOCK_S
    )
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
    if tl.program_id(0) % num_c_blocks == 0:  # the first channel block writes the row's count
        tl.store(pcount_ptr + row, count)
    if not GIVEN_SHIFT:
        if row == 0:
            tl.store(shift_ptr + c, shift, mask=c_mask)


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def as_ncs(x: torch.Tensor) -> torch.Tensor:
    """View x (N, C, *spatial) as (N, C, S); a copy only when the spatial dims cannot be merged."""
    if x.dim() == 2:
        return x.unsqueeze(-1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def launch_config(x3: torch.Tensor) -> dict:
    """Tile sizes and grid for x3 (N, C, S): coalesced along whichever of C or S has stride 1.

    Returns {"BLOCK_C", "BLOCK_S", "num_c_blocks", "num_s_blocks", "n_per_program", "num_rows" (P, rows
    of the partial statistics per channel), "grid", "num_warps"}.
    """
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


class TilePartials(NamedTuple):
    """Per-row statistics of x - K from ``_bn_partial_stats_kernel`` (P rows, float32)."""

    shift: torch.Tensor  # (C,) K
    count: torch.Tensor  # (P,) elements of each row (the same for every channel)
    mean: torch.Tensor  # (P, C) mean of x - K over the row's elements
    m2: torch.Tensor  # (P, C) sum over the row's elements of (x - K - mean)^2


def partial_stats(x: torch.Tensor, shift: torch.Tensor | None = None) -> TilePartials:
    """One read of x (N, C, ...): the per-tile-row partial statistics of x - K, K = ``shift`` (C,) or,
    when None, K_c = x[0, c, 0] (written to the returned ``shift``)."""
    x3 = as_ncs(x)
    n, c, s = x3.shape
    cfg = launch_config(x3)
    f32 = {"device": x.device, "dtype": torch.float32}
    given = shift is not None
    shift = channel_vector(shift, x.device) if given else torch.empty(c, **f32)
    parts = TilePartials(
        shift,
        torch.empty(cfg["num_rows"], **f32),
        torch.empty(cfg["num_rows"], c, **f32),
        torch.empty(cfg["num_rows"], c, **f32),
    )
    _bn_partial_stats_kernel[cfg["grid"]](
        x3, parts.shift, parts.count, parts.mean, parts.m2, n, c, s, *x3.stride(),
        cfg["n_per_program"], cfg["num_s_blocks"], cfg["num_c_blocks"],
        BLOCK_C=cfg["BLOCK_C"], BLOCK_S=cfg["BLOCK_S"], GIVEN_SHIFT=given, num_warps=cfg["num_warps"],
    )  # fmt: skip
    return parts


def launch_tile_backward(kernel, x: torch.Tensor, pointers: tuple, scalars: tuple = ()) -> torch.Tensor:
    """dL/dx with x's shape, dtype and layout from an op's backward ``kernel`` on x's tile grid.

    The kernel's arguments: (x, dx, *pointers, N, C, S, x strides (3), dx strides (3), n_per_program,
    num_s_blocks, num_c_blocks, *scalars, BLOCK_C, BLOCK_S).
    """
    x3 = as_ncs(x)
    n, c, s = x3.shape
    cfg = launch_config(x3)
    dx3 = torch.empty_like(x3)
    kernel[cfg["grid"]](
        x3, dx3, *pointers, n, c, s, *x3.stride(), *dx3.stride(),
        cfg["n_per_program"], cfg["num_s_blocks"], cfg["num_c_blocks"], *scalars,
        BLOCK_C=cfg["BLOCK_C"], BLOCK_S=cfg["BLOCK_S"], num_warps=cfg["num_warps"],
    )  # fmt: skip
    return dx3.view(x.shape)


def check_device(x: torch.Tensor) -> None:
    """RuntimeError unless x is a CUDA tensor or the kernels run in Triton's interpreter."""
    from triton.runtime.interpreter import InterpretedFunction

    if x.device.type != "cuda" and not isinstance(_bn_partial_stats_kernel, InterpretedFunction):
        raise RuntimeError(
            f"the Triton BN-statistics kernel got a {x.device.type} tensor: it needs CUDA tensors, or "
            "TRITON_INTERPRET=1 set before triton is first imported (CPU interpreter, for tests); "
            "use backend='reference' on CPU"
        )


def validate_input(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor) -> None:
    """ValueError for fewer than 2 dims, a non-floating or empty x, or (C,) vectors of another C."""
    if x.dim() < 2:
        raise ValueError(f"BN-statistics loss expects (N, C, ...) input, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"BN-statistics loss expects a floating-point input, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"BN-statistics loss got an empty input of shape {tuple(x.shape)}")
    channels = x.shape[1]
    if running_mean.numel() != channels or running_var.numel() != channels:
        raise ValueError(f"input has {channels} channels but the BatchNorm buffers have {running_mean.numel()}")


def channel_vector(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(C,) float32 contiguous on ``device`` (no copy when it already is)."""
    return t.detach().reshape(-1).to(device=device, dtype=torch.float32).contiguous()
