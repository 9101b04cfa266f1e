"""Batched re-initialisation of the noisy layers (NAYER, Tran et al., CVPR 2024, Sec. 3.2).

NAYER re-initialises every noisy linear before each synthesis batch: that re-initialisation is the
method's only source of randomness ("layer-level random source"). The published code draws the
weights from N(0, 1) and sets the bias to zero; Kaiming-uniform (PyTorch's nn.Linear default) is
offered as an alternative.

All L noisy linears are stored as one (L, out, in) weight tensor and one (L, out) bias tensor, so a
re-initialisation is one call here (and one launch of the Triton kernel in ``noisy_init_triton.py``).
This file is the pure-PyTorch reference and the CPU path.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NOISY_INITS", "reinit_noisy_linears_reference"]

NOISY_INITS = ("normal", "kaiming_uniform")


@torch.no_grad()
def reinit_noisy_linears_reference(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    init: str = "normal",
    generator: torch.Generator | None = None,
) -> None:
    """Re-initialise L stacked linear layers in place.

    Args:
        weight: (L, out_features, in_features) float tensor, overwritten in place.
        bias: (L, out_features) float tensor set to zero, or None.
        init: "normal" -> W ~ N(0, 1) (published NAYER code); "kaiming_uniform" ->
            W ~ U(-1/sqrt(in), 1/sqrt(in)) (nn.Linear's default, He et al. 2015 with a=sqrt(5)).
        generator: torch.Generator on weight's device for reproducible draws; None uses the
            global RNG.

    Raises:
        ValueError: for an unknown ``init`` or a weight that is not 3-D.
    """
    if weight.dim() != 3:
        raise ValueError(f"expected stacked weights (L, out, in), got shape {tuple(weight.shape)}")
    if init == "normal":
        weight.normal_(0.0, 1.0, generator=generator)
    elif init == "kaiming_uniform":
        bound = 1.0 / math.sqrt(weight.shape[-1])
        weight.uniform_(-bound, bound, generator=generator)
    else:
        raise ValueError(f"unknown noisy-layer init {init!r}; choose one of {NOISY_INITS}")
    if bias is not None:
        bias.zero_()
