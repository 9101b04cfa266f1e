"""Real data, used for evaluation (test splits) and for training a teacher (launch/train_teacher.py)."""

from __future__ import annotations

import os

import torch

from .cifar import find_cifar, load_cifar
from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, find_fashion_mnist, load_fashion_mnist
from .imagenet import (IMAGE_EXTENSIONS, ImageFolderEval, ImageNetEvalInfo, check_imagenet_eval, imagenet_eval_loader,
                       imagenet_eval_transform, resized_size)

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "find_cifar", "find_eval_data",
           "find_fashion_mnist", "load_cifar", "load_eval_data", "load_fashion_mnist",
           "IMAGE_EXTENSIONS", "ImageFolderEval", "ImageNetEvalInfo", "check_imagenet_eval", "imagenet_eval_loader",
           "imagenet_eval_transform", "resized_size"]


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


from .eval_source import EvalSource, build_eval_source, check_eval_data, tensor_eval_source  # noqa: E402  (uses the two above)

__all__ += ["EvalSource", "build_eval_source", "check_eval_data", "tensor_eval_source"]
