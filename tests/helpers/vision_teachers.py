"""Helpers shared by tests/unit/test_vision_teachers.py and tests/integration/test_vision_teachers_runs.py."""

from __future__ import annotations

import os

import pytest
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


def require_vision():
    """(timm, torchvision, torchvision.models), imported; called at a test module's top level.

    Skips the whole module, with the reason, where they cannot be imported (the main environment,
    whose CPU torch PyPI's torchvision does not import beside); with NAYER_VISION_TESTS=required
    (CI's vision step) the import error is raised instead, so that step cannot pass by skipping."""
    try:
        import timm
        import torchvision
        from torchvision import models as tvm
    except Exception as err:  # ModuleNotFoundError, or RuntimeError "operator torchvision::nms does not exist"
        if os.environ.get("NAYER_VISION_TESTS") == "required":
            raise
        pytest.skip(
            f"torchvision / timm cannot be imported here ({type(err).__name__}: {err}); these tests run in the "
            'vision environment: pip install -c constraints-vision.txt -e ".[vision]" pytest',
            allow_module_level=True,
        )
    return timm, torchvision, tvm
