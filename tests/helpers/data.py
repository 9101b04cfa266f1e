"""Helpers shared by tests/unit/test_data.py and tests/integration/test_data_runs.py."""

from __future__ import annotations

import pickle

import numpy as np


def write_cifar(root, name: str, n: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    folder, file, key, k = {
        "cifar10": ("cifar-10-batches-py", "test_batch", b"labels", 10),
        "cifar100": ("cifar-100-python", "test", b"fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True, exist_ok=True)
    with open(root / folder / file, "wb") as f:
        pickle.dump({b"data": data, key: [i % k for i in range(n)]}, f)
    return data
