"""The test splits of the small datasets, by name: "fashion_mnist", "cifar10", "cifar100"."""

from __future__ import annotations

import os

import torch

from .cifar import find_cifar, load_cifar
from .fashion_mnist import find_fashion_mnist, load_fashion_mnist

__all__ = ["find_eval_data", "load_eval_data"]


def find_eval_data(dataset: str, root: str | os.PathLike | None = None) -> None:
    """Check that the test split of ``dataset`` ("fashion_mnist", "cifar10", "cifar100") is there.

    Raises:
        FileNotFoundError: it is not (the message says where it looked and how to get it).
        ValueError: unknown dataset.
    """
    if dataset == "fashion_mnist":
        find_fashion_mnist("test", root)
    else:
        find_cifar(dataset, root)


def load_eval_data(dataset: str, root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split of ``dataset``: images (N, C, H, W) uint8 and labels (N,) int64."""
    if dataset == "fashion_mnist":
        return load_fashion_mnist("test", root)
    return load_cifar(dataset, root)
