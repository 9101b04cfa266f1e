"""Kernels of nayer-scale (import name ``nayer_kernels``; the folder is ``kernels/``).

Each op has a pure-PyTorch reference, which is also the CPU path and the test oracle, and a Triton
implementation for CUDA, one op per file (Liger-Kernel style: its Triton kernels, host wrapper and
autograd.Function):
  bn_stats_loss_reference / bn_stats_loss_triton
      BN-statistics loss of one teacher BatchNorm layer (+ momentum)
  bn_partial_sums_reference / bn_partial_sums_triton, bn_stats_loss_from_sums
      the same loss split for global BN statistics: partial sums -> all-reduce -> finalize
  reinit_noisy_linears_reference / reinit_noisy_linears_triton
      batched re-initialisation of all noisy linears

Files:
  bn_stats.py           references of the BN-statistics ops (loss, partial sums, finalize from sums,
                        EMA update): pure PyTorch
  noisy_init.py         reference of the noisy-layer re-initialisation: pure PyTorch
  dispatch.py           select_backend (env var NAYER_KERNELS), resolve_backend and the front functions
                        bn_stats_loss, bn_partial_sums, reinit_noisy_linears; noisy_seed
  bn_tiles_triton.py    what both BN Triton ops share: tiling of x as (N, C, S), the partial-statistics
                        kernel, the elementwise backward loop, launch configuration and checks
  bn_loss_triton.py     op: fused BN-statistics loss (BNStatsLossFunction, bn_stats_loss_triton)
  bn_sums_triton.py     op: partial sums S1, S2 (BNPartialSumsFunction, bn_partial_sums_triton)
  noisy_init_triton.py  op: noisy-layer re-initialisation in one launch (reinit_noisy_linears_triton)

Importing this package never imports triton: the Triton names (the ``*_triton`` files) are loaded on
first access, so it works on machines without triton or a GPU (``bn_stats_loss_triton`` etc. then
raise ImportError); the references and the dispatch import no triton.
"""

from .bn_stats import bn_partial_sums_reference, bn_stats_loss_from_sums, bn_stats_loss_reference, update_ema
from .dispatch import (
    BACKEND_ENV_VAR,
    BACKENDS,
    bn_partial_sums,
    bn_stats_loss,
    noisy_seed,
    reinit_noisy_linears,
    resolve_backend,
    select_backend,
    triton_available,
)
from .noisy_init import NOISY_INITS, reinit_noisy_linears_reference

# name -> submodule, imported lazily (PEP 562) because importing them imports triton.
_LAZY = {
    "BNStatsLossFunction": "bn_loss_triton",
    "BNPartialSumsFunction": "bn_sums_triton",
    "bn_partial_sums_triton": "bn_sums_triton",
    "bn_stats_loss_triton": "bn_loss_triton",
    "reinit_noisy_linears_triton": "noisy_init_triton",
}

__all__ = [
    "BACKENDS",
    "BACKEND_ENV_VAR",
    "BNPartialSumsFunction",
    "BNStatsLossFunction",
    "NOISY_INITS",
    "bn_partial_sums",
    "bn_partial_sums_reference",
    "bn_partial_sums_triton",
    "bn_stats_loss_from_sums",
    "bn_stats_loss",
    "bn_stats_loss_reference",
    "bn_stats_loss_triton",
    "noisy_seed",
    "reinit_noisy_linears",
    "reinit_noisy_linears_reference",
    "reinit_noisy_linears_triton",
    "resolve_backend",
    "select_backend",
    "triton_available",
    "update_ema",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
