"""Model zoo: CIFAR-style ResNet-8/20/32/56 and ResNet-18/34, WRN-16-1/16-2/40-1/40-2, VGG-11-BN,
for any number of input channels and classes. ``build_model(name, num_classes, in_channels)``."""

from . import resnet_cifar, vgg, wrn  # noqa: F401  (registration)
from .registry import build_model, get_classifier, list_models, register_model

__all__ = ["build_model", "get_classifier", "list_models", "register_model"]
