"""CIFAR test-split loading (python-version pickles) and the evaluation-set checks of the trainer."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from conftest import tiny_config
from nayer_scale.data import find_eval_data, load_cifar, load_eval_data
from nayer_scale.trainer import NayerTrainer


def write_cifar(root, name: str, n: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    folder, file, key, k = {"cifar10": ("cifar-10-batches-py", "test_batch", b"labels", 10),
                            "cifar100": ("cifar-100-python", "test", b"fine_labels", 100)}[name]
    (root / folder).mkdir(parents=True, exist_ok=True)
    with open(root / folder / file, "wb") as f:
        pickle.dump({b"data": data, key: [i % k for i in range(n)]}, f)
    return data


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_load_cifar_test_split(tmp_path, name, classes):
    data = write_cifar(tmp_path, name)
    images, labels = load_cifar(name, tmp_path)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    # rows are stored channel-major: the first 1024 bytes are the red plane
    assert torch.equal(images[3, 0].flatten(), torch.from_numpy(data[3, :1024]))
    assert labels.dtype == torch.int64 and labels.tolist() == [i % classes for i in range(20)]
    assert torch.equal(load_eval_data(name, tmp_path)[0], images)


def test_missing_or_malformed_cifar_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar10 test split not found"):
        find_eval_data("cifar10", tmp_path)
    (tmp_path / "cifar-10-batches-py").mkdir()
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(ValueError, match="3072"):
        load_cifar("cifar10", tmp_path)


def test_eval_set_that_does_not_fit_the_teacher_is_refused(tmp_path, teacher_file, fake_test_split, lte_cache):
    write_cifar(tmp_path / "cifar", "cifar10")
    cfg = tiny_config(tmp_path / "run", teacher_file, fake_test_split, lte_cache,
                      "eval.dataset=cifar10", f"eval.root={tmp_path / 'cifar'}")
    with pytest.raises(ValueError, match="shape"):  # 3x32x32 test images for a 1x28x28 teacher
        NayerTrainer(cfg)
    assert not (tmp_path / "run" / "memory").exists()
