"""BatchNorm-statistics loss (DeepInversion feature-distribution regulariser).

For a teacher BatchNorm layer with running statistics (mu_run, var_run) and its input x of shape
(N, C, H, W), DeepInversion (Yin et al., CVPR 2020, Eq. 4) and NAYER (Tran et al., CVPR 2024,
Eq. 3, `L_BN`) penalise

    r(x) = || var_run - var_hat(x) ||_2 + || mu_run - mu_hat(x) ||_2

with mu_hat, var_hat the per-channel mean and *biased* variance over (N, H, W). Plain L2 norms, not
squared, not MSE: that is what the published code (Fast-Datafree ``DeepInversionHook``) computes.

Momentum variant (Fast-Datafree / NAYER ``bn_mmt``): the batch statistics are blended with an
exponential moving average (EMA) of earlier synthesis batches' statistics before the comparison,

    mu_cmp = (1 - m) * mu_hat + m * mu_ema,   var_cmp = (1 - m) * var_hat + m * var_ema,

and the EMA is updated once per synthesis batch (see ``update_ema``).

This file holds the pure-PyTorch reference. It is the CPU path and the oracle for the fused Triton
kernel (a later addition to this folder).
"""

from __future__ import annotations

import torch

__all__ = ["bn_stats_loss_reference", "update_ema"]


def bn_stats_loss_reference(
    x: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    ema_mean: torch.Tensor | None = None,
    ema_var: torch.Tensor | None = None,
    momentum: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BN-statistics loss of one layer, reference implementation.

    Args:
        x: layer input, (N, C, H, W) (or (N, C) for BatchNorm1d), any float dtype, any memory
            format. Statistics are accumulated in float32 whatever the input dtype.
        running_mean, running_var: the layer's buffers, (C,), float32.
        ema_mean, ema_var: EMA of earlier batches' statistics, (C,) float32, or None for the
            first batch (then no blending happens, as in the published code).
        momentum: blend factor m in [0, 1) (NAYER's ``bn_mmt``, 0.9 in the paper's runs).

    Returns:
        (loss, mean, var): loss is a float32 scalar, differentiable w.r.t. x; mean and var are the
        batch's per-channel statistics (C,) float32, still attached to the graph (detach them
        before storing them as EMA state).

    Raises:
        ValueError: if x has fewer than 2 dims or its channel count differs from the buffers'.
    """
    if x.dim() < 2:
        raise ValueError(f"BN-statistics loss expects (N, C, ...) input, got shape {tuple(x.shape)}")
    channels = x.shape[1]
    if running_mean.numel() != channels or running_var.numel() != channels:
        raise ValueError(
            f"input has {channels} channels but the BatchNorm buffers have {running_mean.numel()}"
        )
    dims = [0] + list(range(2, x.dim()))
    # One pass over x for both statistics (separate mean and var calls read it twice; the var
    # reduction was ~9% of a CPU synthesis step of the Fashion-MNIST demo).
    var, mean = torch.var_mean(x.float(), dim=dims, unbiased=False)
    if ema_mean is not None and ema_var is not None and momentum > 0:
        mean_cmp = (1.0 - momentum) * mean + momentum * ema_mean
        var_cmp = (1.0 - momentum) * var + momentum * ema_var
    else:
        mean_cmp, var_cmp = mean, var
    loss = torch.linalg.vector_norm(running_var.float() - var_cmp) + torch.linalg.vector_norm(
        running_mean.float() - mean_cmp
    )
    return loss, mean, var


def update_ema(
    ema: tuple[torch.Tensor, torch.Tensor] | None,
    batch: tuple[torch.Tensor, torch.Tensor],
    momentum: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """EMA update of (mean, var) after a synthesis batch, as Fast-Datafree's ``update_mmt``.

    ema <- batch on the first call, else ema <- m * ema + (1 - m) * batch. All tensors (C,) float32;
    the batch statistics are detached.
    """
    mean, var = batch[0].detach(), batch[1].detach()
    if ema is None:
        return mean.clone(), var.clone()
    return (
        momentum * ema[0] + (1.0 - momentum) * mean,
        momentum * ema[1] + (1.0 - momentum) * var,
    )
