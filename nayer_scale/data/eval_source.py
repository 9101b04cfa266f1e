"""Evaluation sources: where a run's real held-out images come from, built from ``EvalConfig``.

An *evaluation source* is a callable that returns a fresh iterable of this process's batches
``(images, labels)``: images uint8 (B, C, H, W) at the teacher's input size, labels int64 (B,).
Every process gets a disjoint share, so that counts summed over processes cover each image once.
The trainer only sees the callable (``nayer_scale.evaluation.Evaluator``); dataset names live here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .imagenet import check_imagenet_eval, imagenet_eval_loader
from .splits import find_eval_data, load_eval_data

__all__ = ["EvalSource", "build_eval_source", "check_eval_data", "tensor_eval_source"]

EvalSource = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def tensor_eval_source(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
) -> EvalSource:
    """Batches of an in-memory split: process ``rank`` takes every ``world_size``-th image.

    Args:
        images: (N, C, H, W) uint8; labels: (N,) int64; batch_size: images per batch.
    Returns:
        a callable giving a list of (images, labels) views on ``device``.
    """
    images = images[rank::world_size].to(device)
    labels = labels[rank::world_size].to(device)
    return lambda: [
        (images[i : i + batch_size], labels[i : i + batch_size])  # views: a sized list
        for i in range(0, len(labels), batch_size)
    ]


def check_eval_data(
    eval_cfg, num_classes: int, in_channels: int | None = None, class_names: list[str] | None = None
) -> None:
    """Fail fast (before a teacher download or model build) when the evaluation data is missing.

    ``in_channels`` and ``class_names`` (the teacher's) are used by ``eval.dataset=hf``
    (``nayer_scale.data.hf.check_hf_eval``: grey vs colour, class names); None skips those checks.

    Raises:
        FileNotFoundError: the data is not there (the message says where it looked and how to get it).
        ValueError: an ImageNet folder / shards that do not fit ``num_classes``; a ``datasets`` set with a
            missing split or column, labels outside the teacher's classes, other class names, or grey
            images for a colour teacher (or the reverse).
    """
    if eval_cfg.dataset == "hf":
        from .hf import check_hf_eval  # datasets is an optional dependency (extra "hf")

        check_hf_eval(eval_cfg, num_classes, in_channels, class_names)
    elif eval_cfg.dataset == "imagenet":
        check_imagenet_eval(eval_cfg.root, num_classes)
    elif eval_cfg.dataset != "none":
        find_eval_data(eval_cfg.dataset, eval_cfg.root or None)


def build_eval_source(
    eval_cfg,
    in_channels: int,
    image_size: int,
    num_classes: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    class_names: list[str] | None = None,
) -> EvalSource | None:
    """The evaluation source of ``eval_cfg`` (an ``EvalConfig``) for a teacher that takes
    (in_channels, image_size, image_size) inputs and has ``num_classes`` classes; None for
    ``eval.dataset=none``. Checks, before any training, that the data fits the teacher (call
    ``check_eval_data`` first, before any expensive set-up, for its existence). ``class_names`` (the
    teacher's) are compared with an ``eval.dataset=hf`` set's ClassLabel names.

    Raises:
        FileNotFoundError: the data is not there (the message says where it looked).
        ValueError: images of another shape / channel count, or labels outside the teacher's classes.
    """
    e = eval_cfg
    if e.dataset == "none":
        return None
    if e.dataset == "hf":
        from .hf import hf_eval_loader

        loader = hf_eval_loader(e, in_channels, image_size, num_classes, rank, world_size, class_names)
        return lambda: loader
    if e.dataset == "imagenet":
        if in_channels != 3:
            raise ValueError(f"eval.dataset=imagenet gives RGB images, the teacher takes {in_channels} channels")
        resize = e.resize or round(image_size / 0.875)
        return lambda: imagenet_eval_loader(
            e.root,
            rank,
            world_size,
            e.batch_size,
            resize=resize,
            crop=image_size,
            num_workers=e.num_workers,
            num_classes=num_classes,
        )
    images, labels = load_eval_data(e.dataset, e.root or None)
    if images.shape[1:] != (in_channels, image_size, image_size):
        raise ValueError(
            f"eval.dataset {e.dataset} has images of shape {tuple(images.shape[1:])}, "
            f"the teacher takes ({in_channels}, {image_size}, {image_size})"
        )
    if int(labels.max()) >= num_classes:
        raise ValueError(
            f"eval.dataset {e.dataset} has label {int(labels.max())}, the teacher has {num_classes} classes"
        )
    return tensor_eval_source(images, labels, e.batch_size, rank, world_size, device)
