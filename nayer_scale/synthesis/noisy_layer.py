"""The noisy layer of NAYER (Tran et al., CVPR 2024, Sec. 3.2, "K-to-1").

Z(e) = W_i BN1d(e) + b_i : a BatchNorm1d over the label-text embeddings e (K classes, text_dim),
followed by a linear map text_dim -> noise_dim. In the K-to-1 setting a synthesis batch holds
ceil(B / K) consecutive copies of the K classes (labels [0..K-1, 0..K-1, ...]); copy i goes
through its own linear (W_i, b_i). All linears are re-initialised before every synthesis batch
(the method's only source of randomness); the BatchNorm1d is *not* reset, as in the published code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nayer_kernels import NOISY_INITS, reinit_noisy_linears, reinit_noisy_linears_reference

__all__ = ["NoisyLayer"]


class NoisyLayer(nn.Module):
    """K-to-1 noisy layer: BatchNorm1d(text_dim) then one Linear(text_dim -> noise_dim) per copy.

    Args:
        text_dim: width D of the label-text embeddings.
        noise_dim: output width r (1000 in the paper).
        num_classes: K, the number of rows served by one linear.
        batch_size: synthesis batch size B; ceil(B / K) linears are created.
        init: "normal" (N(0,1) weights, zero bias: published code) or "kaiming_uniform".
        use_batchnorm: False drops the BatchNorm1d (the paper's "NL woBN" ablation).
        backend: "reference" (PyTorch) or "triton" (one-launch kernel) for the re-initialisation.

    Shapes: forward takes e (B, text_dim) float, rows ordered as consecutive copies of the
    classes, and returns (B, noise_dim) in e's dtype.

    Raises:
        ValueError: for non-positive sizes or an unknown init.
    """

    def __init__(
        self,
        text_dim: int,
        noise_dim: int,
        num_classes: int,
        batch_size: int,
        init: str = "normal",
        use_batchnorm: bool = True,
        backend: str = "reference",
    ) -> None:
        super().__init__()
        if min(text_dim, noise_dim, num_classes, batch_size) <= 0:
            raise ValueError("text_dim, noise_dim, num_classes and batch_size must be positive")
        if init not in NOISY_INITS:
            raise ValueError(f"unknown noisy-layer init {init!r}; choose one of {NOISY_INITS}")
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.init = init
        self.backend = backend
        self.num_linears = math.ceil(batch_size / num_classes)
        self.norm = nn.BatchNorm1d(text_dim) if use_batchnorm else nn.Identity()
        # Stacked as (L, out, in), nn.Linear's layout, so one call re-initialises all of them.
        self.weight = nn.Parameter(torch.empty(self.num_linears, noise_dim, text_dim))
        self.bias = nn.Parameter(torch.empty(self.num_linears, noise_dim))
        # The first draw uses the PyTorch path whatever the backend, so that building the layer
        # consumes the global RNG identically on every backend (the trainer re-draws before use).
        reinit_noisy_linears_reference(self.weight, self.bias, init)

    def reinitialize(self, generator: torch.Generator | None = None, seed: int | None = None) -> None:
        """Re-draw every noisy linear (weights per ``init``, zero bias) in one call; the BatchNorm1d
        is kept. ``seed`` (e.g. ``nayer_kernels.noisy_seed(run_seed, epoch, batch, rank)``) makes the
        draw a pure function of the seed on either backend; else ``generator`` (or the global RNG)."""
        reinit_noisy_linears(self.weight, self.bias, self.init, self.backend, generator=generator, seed=seed)

    def linear_parameters(self) -> list[nn.Parameter]:
        """The re-initialised parameters (weight, bias); the optimizer state of these is reset."""
        return [self.weight, self.bias]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        batch = embeddings.shape[0]
        if batch > self.num_linears * self.num_classes:
            raise ValueError(
                f"batch of {batch} rows needs more than the {self.num_linears} noisy linears built "
                f"for batch_size={self.batch_size}"
            )
        h = self.norm(embeddings)
        copies = math.ceil(batch / self.num_classes)
        pad = copies * self.num_classes - batch
        if pad:
            h = torch.cat([h, h.new_zeros(pad, h.shape[1])])
        # (copies, K, D) @ (copies, D, r) + (copies, 1, r) -> (copies, K, r): copy i uses linear i.
        h = h.view(copies, self.num_classes, -1)
        w = self.weight[:copies].transpose(1, 2).to(h.dtype)
        out = torch.baddbmm(self.bias[:copies, None, :].to(h.dtype), h, w)
        return out.reshape(copies * self.num_classes, -1)[:batch]
