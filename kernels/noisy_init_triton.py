"""Batched re-initialisation of NAYER's noisy linears in ONE Triton launch.

NAYER (Tran et al., CVPR 2024, Sec. 3.2) re-draws every noisy linear before each synthesis batch:
that is the method's only source of randomness. All L linears live in one (L, out, in) weight and
one (L, out) bias, so one launch writes every weight and zeroes every bias:

    normal:          W[i] = Philox-normal(seed, i)                     ~ N(0, 1)      (published code)
    kaiming_uniform: W[i] = (2 Philox-uniform(seed, i) - 1) / sqrt(in) ~ U(-1/sqrt(in), 1/sqrt(in))
    bias = 0

with i the global (flat) element index. The generator is counter-based (``tl.randn(seed, offsets)``
/ ``tl.rand``): a given seed always gives the same weights, whatever the grid or the block size, and
the caller derives the seed from (run seed, epoch, batch index, rank) with ``noisy_seed`` so that every
batch on every rank gets its own, reproducible weights. The numbers differ from the reference's
``torch.Generator`` draws (different generators); the distributions are the same.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .noisy_init import NOISY_INITS

__all__ = ["reinit_noisy_linears_triton"]

BLOCK_SIZE = 1024


@triton.jit(do_not_specialize=["seed"])
def _reinit_noisy_kernel(
    weight_ptr,
    bias_ptr,
    n_weight,
    n_bias,
    seed,
    bound,
    NORMAL: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if NORMAL:
        w = tl.randn(seed, offs)
    else:
        w = (2.0 * tl.rand(seed, offs) - 1.0) * bound
    tl.store(weight_ptr + offs, w.to(weight_ptr.dtype.element_ty), mask=offs < n_weight)
    if HAS_BIAS:
        zero = tl.zeros([BLOCK], dtype=bias_ptr.dtype.element_ty)
        tl.store(bias_ptr + offs, zero, mask=offs < n_bias)


@torch.no_grad()
def reinit_noisy_linears_triton(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    init: str = "normal",
    seed: int = 0,
) -> None:
    """Re-initialise L stacked linear layers in place with one Triton launch.

    Args:
        weight: (L, out_features, in_features) contiguous float32/bfloat16/float16 tensor, CUDA (or
            CPU under TRITON_INTERPRET=1); overwritten in place with W ~ N(0, 1) for
            init="normal" (published NAYER code) or W ~ U(-1/sqrt(in), 1/sqrt(in)) for
            init="kaiming_uniform" (nn.Linear's default), drawn in float32 and rounded to the dtype.
        bias: (L, out_features) contiguous tensor on the same device, set to zero; or None.
        init: "normal" or "kaiming_uniform".
        seed: int in [0, 2**63) (use ``noisy_seed(run_seed, epoch, batch, rank)``);
            element i of the flattened weight is Philox(seed, counter=i), so the same seed gives
            bit-identical weights on the same device.

    Raises:
        ValueError: for an unknown init, a weight that is not 3-D, a non-contiguous tensor, a bias
            of the wrong shape, more than 2**31 - 1 weight elements, or a seed out of range.
        RuntimeError: for a CPU tensor when triton is not in interpreter mode.
    """
    if init not in NOISY_INITS:
        raise ValueError(f"unknown noisy-layer init {init!r}; choose one of {NOISY_INITS}")
    if weight.dim() != 3:
        raise ValueError(f"expected stacked weights (L, out, in), got shape {tuple(weight.shape)}")
    if not weight.is_contiguous() or (bias is not None and not bias.is_contiguous()):
        raise ValueError("the Triton noisy-layer init writes flat offsets: weight and bias must be contiguous")
    if bias is not None and tuple(bias.shape) != tuple(weight.shape[:2]):
        raise ValueError(f"bias must have shape {tuple(weight.shape[:2])}, got {tuple(bias.shape)}")
    if weight.numel() >= 2**31:
        raise ValueError(f"{weight.numel()} weight elements: the kernel uses 32-bit offsets (< 2**31)")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    from triton.runtime.interpreter import InterpretedFunction

    if weight.device.type != "cuda" and not isinstance(_reinit_noisy_kernel, InterpretedFunction):
        raise RuntimeError(
            f"the Triton noisy-layer init got a {weight.device.type} tensor: it needs CUDA tensors, or "
            "TRITON_INTERPRET=1 set before triton is first imported; use backend='reference' on CPU"
        )
    n_weight = weight.numel()
    if n_weight == 0:
        if bias is not None:
            bias.zero_()
        return
    n_bias = 0 if bias is None else bias.numel()
    grid = (triton.cdiv(max(n_weight, n_bias), BLOCK_SIZE),)
    _reinit_noisy_kernel[grid](
        weight, weight if bias is None else bias, n_weight, n_bias,
        int(seed), 1.0 / math.sqrt(weight.shape[-1]),
        NORMAL=init == "normal", HAS_BIAS=bias is not None, BLOCK=BLOCK_SIZE,
    )  # fmt: skip
    # The kernel wrote through raw pointers: bump the version counters as an in-place op would, so
    # autograd still detects use of the old values in a graph built before the re-initialisation.
    torch.autograd.graph.increment_version(weight)
    if bias is not None:
        torch.autograd.graph.increment_version(bias)
