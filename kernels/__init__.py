"""Kernels of nayer-scale (import name ``nayer_kernels``; the folder is ``kernels/``).

Each op has a pure-PyTorch reference here, which is also the CPU path:
  bn_stats_loss_reference        BN-statistics loss of one teacher BatchNorm layer (+ momentum)
  reinit_noisy_linears_reference batched re-initialisation of all noisy linears
"""

from .bn_stats import bn_stats_loss_reference, update_ema
from .noisy_init import NOISY_INITS, reinit_noisy_linears_reference

__all__ = ["NOISY_INITS", "bn_stats_loss_reference", "reinit_noisy_linears_reference", "update_ema"]
