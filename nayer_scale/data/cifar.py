"""CIFAR-10 / CIFAR-100 test splits (Krizhevsky, 2009) from the standard "python version" archives,
for evaluating a student distilled from a CIFAR teacher.

Expected layout (what ``tar xzf cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` give):
``<root>/cifar-10-batches-py/test_batch`` and ``<root>/cifar-100-python/test``; ``root`` may also
be the inner folder itself. Searched in: the ``root`` argument, ``$NAYER_CIFAR``,
~/.cache/nayer-scale/cifar. The files are pickles: only load archives you trust.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

__all__ = ["find_cifar", "load_cifar"]

_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", "test_batch", b"labels", 10),
    "cifar100": ("cifar-100-python", "test", b"fine_labels", 100),
}


def find_cifar(name: str, root: str | os.PathLike | None = None) -> Path:
    """Path of the test-split pickle of ``name`` ("cifar10" or "cifar100").

    Raises:
        ValueError: unknown name.
        FileNotFoundError: not found; the message lists the places searched.
    """
    if name not in _LAYOUT:
        raise ValueError(f"name must be cifar10 or cifar100, got {name!r}")
    folder, file, _, _ = _LAYOUT[name]
    roots = [root] if root else [os.environ.get("NAYER_CIFAR"), "~/.cache/nayer-scale/cifar"]
    searched = []
    for r in (Path(r).expanduser() for r in roots if r):
        for candidate in (r / folder / file, r / file):
            searched.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{name} test split not found (looked for {searched}). Download the python version "
        f"from https://www.cs.toronto.edu/~kriz/cifar.html, extract it and pass "
        f"eval.root=<folder> (or set NAYER_CIFAR)."
    )


def load_cifar(name: str, root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the test split of CIFAR-10 or CIFAR-100.

    Returns:
        images: (10000, 3, 32, 32) uint8 tensor; labels: (10000,) int64 in [0, 10) or [0, 100).

    Raises:
        FileNotFoundError: see ``find_cifar``.
        ValueError: the pickle lacks the expected keys or shapes.
    """
    path = find_cifar(name, root)
    _, _, label_key, num_classes = _LAYOUT[name]
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    if b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path} is not a {name} python-version batch (keys {sorted(batch)})")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: data of shape {data.shape} for {len(labels)} labels, expected (N, 3072)")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"{path}: labels outside [0, {num_classes})")
    return torch.from_numpy(data.copy()).view(-1, 3, 32, 32), torch.from_numpy(labels)
