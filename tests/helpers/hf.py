"""Helpers shared by tests/unit/test_hf.py and tests/integration/test_hf_runs.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

datasets = pytest.importorskip("datasets")  # declared in the "hf" extra (part of "dev")

from nayer_scale.data import FASHION_MNIST_CLASSES, load_eval_data  # noqa: E402

N_IMAGES = 200


@pytest.fixture(scope="module")
def fm_split():
    """The first 200 images of the real Fashion-MNIST test split (random 28x28 images where the data
    is not installed: the comparisons below hold for any images)."""
    try:
        images, labels = load_eval_data("fashion_mnist")
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        images = torch.from_numpy(rng.integers(0, 256, (N_IMAGES, 1, 28, 28), dtype=np.uint8))
        labels = torch.from_numpy(rng.integers(0, 10, N_IMAGES)).long()
    return images[:N_IMAGES].clone(), labels[:N_IMAGES].clone()


def _fm_dataset(images: torch.Tensor, labels: torch.Tensor, names=FASHION_MNIST_CLASSES):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})
    return datasets.Dataset.from_dict(
        {"image": [Image.fromarray(im[0].numpy()) for im in images], "label": labels.tolist()}, features=features
    )


@pytest.fixture(scope="module")
def fm_saved(fm_split, tmp_path_factory) -> Path:
    """The Fashion-MNIST test images as ``Dataset.from_dict(...).save_to_disk``."""
    path = tmp_path_factory.mktemp("fm_hf") / "fashion_mnist_test"
    _fm_dataset(*fm_split).save_to_disk(str(path))
    return path


# ---------------------------------------------------------------------------------------------
# 2. Teachers from `transformers`


def _save_tiny_resnet(folder: Path, names=FASHION_MNIST_CLASSES, preprocessor: dict | None = None) -> Path:
    """A randomly initialised transformers ResNet (1 channel, 8/16 wide, one block per stage) saved
    with save_pretrained, plus the preprocessor_config.json an image processor would write."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(
        num_channels=1,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    ResNetForImageClassification(config).save_pretrained(str(folder))
    pre = {
        "image_processor_type": "ConvNextImageProcessor",
        "do_resize": True,
        "size": {"height": 28, "width": 28},
        "do_normalize": True,
        "image_mean": [0.2860],
        "image_std": [0.3530],
        "rescale_factor": 1 / 255,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor or pre))
    return folder


@pytest.fixture(scope="module")
def hf_teacher_dir(tmp_path_factory) -> Path:
    return _save_tiny_resnet(tmp_path_factory.mktemp("hf_teacher") / "tiny-resnet")
