"""Fashion-MNIST (Xiao et al., 2017) from its gzipped IDX files, loaded with numpy.

Searched in: the ``root`` argument, ``$NAYER_FASHION_MNIST``, /usr/share/datasets/fashion-mnist
(Debian package ``dataset-fashion-mnist``), ~/.cache/nayer-scale/fashion-mnist. docs/quickstart.md says how
to get the files elsewhere. Data-free distillation reads the *test* split only (evaluation); the
*train* split is read by ``launch/train_teacher.py`` alone.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "find_fashion_mnist",
    "load_fashion_mnist",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _candidates(root: str | os.PathLike | None) -> list[Path]:
    dirs = [
        root,
        os.environ.get("NAYER_FASHION_MNIST"),
        "/usr/share/datasets/fashion-mnist",
        "~/.cache/nayer-scale/fashion-mnist",
    ]
    return [Path(d).expanduser() for d in dirs if d]


def find_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Paths of the (images, labels) files of ``split`` ("train" or "test").

    Raises:
        ValueError: unknown split.
        FileNotFoundError: no candidate folder holds both files; the message lists the folders
            searched and how to install the data.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    names = _FILES[split]
    searched = _candidates(root) if root is None else [Path(root).expanduser()]
    for folder in searched:
        paths = (folder / names[0], folder / names[1])
        if all(p.is_file() for p in paths):
            return paths
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files {names} not found in {[str(d) for d in searched]}. Install them with "
        "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four *-ubyte.gz files of "
        "github.com/zalandoresearch/fashion-mnist into a folder and pass eval.root=<folder> "
        "(or set NAYER_FASHION_MNIST)."
    )


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split.

    Returns:
        images: (N, 1, 28, 28) uint8 tensor (N = 60000 train, 10000 test).
        labels: (N,) int64 tensor in [0, 10).

    Raises:
        FileNotFoundError: see ``find_fashion_mnist``.
        ValueError: the files are not IDX files of matching lengths.
    """
    image_path, label_path = find_fashion_mnist(split, root)
    images = _read_idx(image_path, 16)
    labels = _read_idx(label_path, 8)
    if images.size != labels.size * 28 * 28:
        raise ValueError(f"{image_path} holds {images.size} bytes of pixels for {labels.size} labels")
    return (torch.from_numpy(images.copy()).view(-1, 1, 28, 28), torch.from_numpy(labels.astype(np.int64)))
