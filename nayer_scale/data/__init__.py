"""Real data, used for evaluation (test split) and for training a teacher (launch/train_teacher.py)."""

from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, find_fashion_mnist, load_fashion_mnist

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "find_fashion_mnist", "load_fashion_mnist"]
