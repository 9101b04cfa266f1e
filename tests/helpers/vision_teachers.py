"""Helpers shared by tests/unit/test_vision_teachers.py and tests/integration/test_vision_teachers_runs.py."""

from __future__ import annotations

import torch
from torch import nn


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN running statistics, so that eval-mode outputs depend on every buffer."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()
