"""Real data, used for evaluation (test splits) and for training a teacher (launch/train_teacher.py):
the Fashion-MNIST and CIFAR files (``fashion_mnist``, ``cifar``, by name in ``splits``), ImageNet val
folders and shards (``imagenet``), Hugging Face datasets (``hf``), and the evaluation sources a run
reads them through (``eval_source``)."""

from .cifar import find_cifar, load_cifar
from .eval_source import EvalSource, build_eval_source, check_eval_data, tensor_eval_source
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    find_fashion_mnist,
    load_fashion_mnist,
)
from .imagenet import (
    IMAGE_EXTENSIONS,
    ImageFolderEval,
    ImageNetEvalInfo,
    check_imagenet_eval,
    imagenet_eval_loader,
    imagenet_eval_transform,
    resized_size,
)
from .splits import find_eval_data, load_eval_data

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "find_cifar",
    "find_eval_data",
    "find_fashion_mnist",
    "load_cifar",
    "load_eval_data",
    "load_fashion_mnist",
    "IMAGE_EXTENSIONS",
    "ImageFolderEval",
    "ImageNetEvalInfo",
    "check_imagenet_eval",
    "imagenet_eval_loader",
    "imagenet_eval_transform",
    "resized_size",
    "EvalSource",
    "build_eval_source",
    "check_eval_data",
    "tensor_eval_source",
]
