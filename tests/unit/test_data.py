"""CIFAR test-split loading (python-version pickles) and the evaluation-set checks of the trainer.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_data_runs.py."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from helpers.data import write_cifar
from nayer_scale.data import find_eval_data, load_cifar, load_eval_data


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
