"""Helpers shared by the memory-bank tests (tests/unit/test_memory.py, tests/unit/test_memory_bounded.py,
tests/integration/test_memory_bounded_runs.py)."""

from __future__ import annotations

import torch


def batch(n: int, seed: int, shape=(1, 4, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g), torch.randint(0, 10, (n,), generator=g)
