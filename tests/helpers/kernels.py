"""Helpers shared by tests/unit/test_kernels.py and tests/integration/test_kernels_runs.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def noisy_triton(triton_kernels):
    """The noisy-layer re-initialisation op module."""
    import nayer_kernels.noisy_init_triton as module

    return module
