"""Helpers shared by tests/unit/test_bn_global.py and tests/integration/test_bn_global_runs.py."""

from __future__ import annotations

import torch
from bn_global_worker import FIRST_BN_MULTIPLIER, MOMENTUM, batches, run_steps, tiny_teacher

from nayer_scale.synthesis.bn_hooks import BNStatsHooks

# var = S2 / M - (S1 / M)^2 cancels when |mean - running mean| >> std (this teacher's running means
# are random, up to ~3 std off): fp32 statistics agree to ~1e-5 relative, not 1e-7
STATS_TOL = {"rtol": 1e-4, "atol": 1e-5}


def _ema_tol(key: str, oracle: dict) -> dict:
    """Variances: the float32 cancellation bound, 2^-17 (mean - running mean)^2 (max over channels)."""
    if not key.startswith("ema_var"):
        return STATS_TOL
    layer = int(key.removeprefix("ema_var"))
    bn = [m for m in tiny_teacher().modules() if isinstance(m, torch.nn.BatchNorm2d)][layer]
    offset = (oracle[f"ema_mean{layer}"] - bn.running_mean).square().max().item()
    return {"rtol": STATS_TOL["rtol"], "atol": max(STATS_TOL["atol"], offset * 2.0**-17)}


def _oracle(world_size: int) -> dict[str, torch.Tensor]:
    """One process, scope "process", on the concatenated batches."""
    teacher = tiny_teacher()
    return run_steps(BNStatsHooks(teacher, MOMENTUM, FIRST_BN_MULTIPLIER, "reference"), teacher, batches(world_size))
