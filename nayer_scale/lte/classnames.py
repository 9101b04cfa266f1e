"""Class-name lists of the standard benchmarks, in each dataset's label-index order.

NAYER (Tran et al., CVPR 2024, Sec. 3) conditions its generator on label-text embeddings: every
class name is turned into a prompt and embedded once by a pretrained text encoder. These lists are
the class names for the datasets the paper uses; they live as one-name-per-line files under
``nayer_scale/lte/classnames/`` so that they ship as package data and are easy to inspect.

Sources and order:

* ``fashion_mnist`` (10): the official Fashion-MNIST label names, labels 0..9.
* ``cifar10`` (10) and ``cifar100`` (100): the standard (fine-)label index order; CIFAR-100 names
  have their underscores replaced by spaces (``aquarium_fish`` -> ``aquarium fish``).
* ``imagenet`` (1000): the readable names of OpenAI CLIP's "Prompt Engineering for ImageNet"
  notebook (Radford et al., 2021), in the standard index order (sorted WordNet ids). That list
  repeats two names; here index 744 is ``projectile`` (CLIP: a second ``missile``) and index 836
  is ``sunglass`` (CLIP: a second ``sunglasses``), so all 1000 names are distinct.
* ``tiny_imagenet`` (200): the standard ImageFolder order, i.e. the sorted WordNet ids of
  ``wnids.txt`` (kept alongside as ``classnames/tiny_imagenet_wnids.txt``). Every Tiny-ImageNet
  class is an ImageNet-1k class, and its name is the ``imagenet`` name of that class.

:func:`resolve_class_names` reads ``teacher.class_names``: one of these keys, or a .txt file of the
user's own names.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

__all__ = ["DATASETS", "get_class_names", "resolve_class_names"]

_DIR = Path(__file__).resolve().parent / "classnames"

#: Dataset key -> expected number of classes.
DATASETS: dict[str, int] = {
    "fashion_mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "tiny_imagenet": 200,
    "imagenet": 1000,
}


@lru_cache(maxsize=None)
def _read(dataset: str) -> tuple[str, ...]:
    path = _DIR / f"{dataset}.txt"
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != DATASETS[dataset]:
        raise RuntimeError(
            f"{path} holds {len(names)} class names, expected {DATASETS[dataset]}: "
            "the package data is damaged, reinstall nayer-scale"
        )
    return names


def get_class_names(dataset: str) -> list[str]:
    """The class names of a standard dataset, in label-index order.

    Args:
        dataset: one of ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``, ``"tiny_imagenet"``,
            ``"imagenet"`` (case-insensitive; ``-`` is accepted for ``_``).

    Returns:
        A new list of ``K`` strings (K = 10, 10, 100, 200, 1000), where entry ``k`` names label ``k``.
        These are the names NAYER (Tran et al., CVPR 2024, Sec. 3) turns into prompts for the
        label-text embedding pool.

    Raises:
        ValueError: ``dataset`` is not a known key; the message lists the valid keys.
    """
    key = dataset.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} for class names; valid names: {', '.join(DATASETS)}")
    return list(_read(key))


def resolve_class_names(spec: str) -> list[str]:
    """Class names from a dataset key ("fashion_mnist", "cifar10", ...) or a .txt file (one per line).

    Raises:
        FileNotFoundError: ``spec`` looks like a path (has a separator or .txt) and does not exist.
        ValueError: unknown dataset key, or an empty list.
    """
    if spec.endswith(".txt") or os.sep in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"class-name file {path} does not exist")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = get_class_names(spec)
    if not names:
        raise ValueError(f"no class names in {spec!r}")
    return names
