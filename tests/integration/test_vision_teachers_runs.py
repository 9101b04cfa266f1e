"""torchvision and timm teachers with the real libraries (the ``vision`` extra, a second environment:
``pip install -c constraints-vision.txt -e ".[vision]" pytest``; .ci/run runs this file there).

Offline: random weights only. torchvision's named weights are resolved for their metadata, and their
"download" is a random state dict put in the torch hub cache under the file name torchvision gives it
(with any real download made to fail); timm repositories are folders written by timm's own
``save_for_hf``, standing in for the hub.

Skipped, with the reason, only where torchvision or timm cannot be imported (the main environment,
whose CPU torch 2.13 PyPI's torchvision does not import beside); with NAYER_VISION_TESTS=required (CI's
vision step) that is an error instead, so the step cannot pass by skipping.
The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_vision_teachers.py.
"""

from __future__ import annotations

import os

import pytest

from helpers.vision_teachers import randomise_bn, require_vision
from nayer_scale.models.io import save_model

timm, torchvision, tvm = require_vision()
pytestmark = [pytest.mark.vision, pytest.mark.usefixtures("one_thread")]


# ---- a run ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["torchvision:resnet18", "timm:resnet18"])
def test_distil_a_few_steps_from_a_local_weights_file(tmp_path, lte_cache, arch):
    """The trainer end to end (data-free, a hashed text encoder: nothing downloaded) with a torchvision
    or timm ResNet-18 given by name and a local weights file; run.yaml records the teacher as given."""
    from conftest import tiny_config
    from nayer_scale.trainer import NayerTrainer

    net = (
        tvm.resnet18(num_classes=10)
        if arch.startswith("torchvision")
        else timm.create_model("resnet18", pretrained=False, num_classes=10)
    )
    weights = tmp_path / "teacher.safetensors"
    save_model(randomise_bn(net), weights)
    cfg = tiny_config(
        tmp_path / "run",
        weights,
        tmp_path,
        lte_cache,
        f"teacher.arch={arch}",
        "teacher.in_channels=3",
        "teacher.mean=0.5,0.5,0.5",
        "teacher.std=0.25,0.25,0.25",
        "teacher.image_size=32",
        "teacher.class_names=cifar10",
        "eval.dataset=none",
        "lte.encoder=hashed",
        "run.epochs=2",
    )
    summary = NayerTrainer(cfg).fit()
    assert summary["epochs"] == 2 and summary["memory_size"] == 2 * cfg.synthesis.batch_size
    assert 0 <= summary["student_agreement"] <= 1
    recorded = (tmp_path / "run" / "run.yaml").read_text()
    assert f"arch: {arch}" in recorded and str(weights) in recorded
