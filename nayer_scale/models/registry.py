"""Model registry: ``register_model(name)`` decorates a factory ``f(num_classes, in_channels)``
returning an nn.Module whose ``forward(x, return_features=False)`` maps (N, C, H, W) float input to
(N, num_classes) logits, or to (logits, (N, F) penultimate features)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["build_model", "get_classifier", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a factory to the zoo under ``name``; ValueError if the name is taken."""

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = factory
        return factory

    return add


def list_models() -> list[str]:
    """Names of all zoo models, sorted."""
    return sorted(_MODELS)


def build_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build zoo model ``name`` with a ``num_classes``-way classifier for ``in_channels`` inputs.

    Returns:
        a freshly initialised model in train mode (float32 parameters on the CPU).

    Raises:
        ValueError: unknown name (the message lists the zoo), or num_classes / in_channels < 1.
    """
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes} and {in_channels}")
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; the zoo has: {', '.join(list_models())}")
    return _MODELS[name](num_classes=num_classes, in_channels=in_channels)


def get_classifier(model: nn.Module) -> nn.Linear:
    """The classifier of ``model``: its ``classifier`` attribute when that is an nn.Linear, else the
    last nn.Linear among ``model.modules()``. Its ``out_features`` is the number of classes.

    Raises:
        ValueError: ``model`` has no nn.Linear.
    """
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return linears[-1]
