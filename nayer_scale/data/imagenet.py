"""ImageNet validation data for evaluating an ImageNet teacher or student, with the standard
"resize 256 / center crop 224" evaluation protocol, without torchvision.

Two sources:

* an ImageFolder-style directory ``root/<class folder>/<image files>`` (what the usual
  ``valprep.sh`` gives: one folder per wnid). Classes are the sorted subfolder names and the label
  of an image is the index of its folder in that order, as torchvision's ``ImageFolder``; for
  ImageNet the sorted wnids ARE the standard class indices 0..999. Files are found recursively
  (``os.walk``, following links) by extension, case-insensitively (.jpg .jpeg .png .webp .bmp
  .ppm .pgm .tif .tiff). Unlike torchvision, names starting with "." are skipped (folders such as
  ``.ipynb_checkpoints``, which would otherwise become a class and shift every label, and macOS
  ``._x.JPEG`` resource forks, which are not images).
* webdataset shards: a folder holding ``*.tar`` (also ``.tar.gz``/``.tgz``), a single shard path,
  or a brace pattern such as ``/data/imagenet-val-{000000..000049}.tar``. A sample is an image
  member (``jpg``, ``jpeg``, ``png`` or ``webp``, any case) plus ``cls``: the integer label as
  text, the common ImageNet webdataset layout. ``pipe:`` and ``scheme://`` URLs are passed to
  webdataset unchecked.

The transform is torchvision's ``Compose([Resize(resize), CenterCrop(crop)])`` on an RGB PIL
image (resize the shorter side to ``resize`` with antialiased bilinear, keep the aspect ratio with
``int(resize * long / short)`` for the longer side, then crop the centre with ``round`` placement),
ending in a uint8 (3, crop, crop) tensor rather than a float one: normalise on the device.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderEval",
    "ImageNetEvalInfo",
    "check_imagenet_eval",
    "imagenet_eval_loader",
    "imagenet_eval_transform",
    "resized_size",
]

# torchvision's IMG_EXTENSIONS, compared lower-cased.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Image members a webdataset sample may hold (the suffix webdataset lower-cases).
_WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


# --------------------------------------------------------------------------------------------
# Transform


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(new_width, new_height) of torchvision ``Resize(resize)`` (an int: the shorter side) on a
    ``width`` x ``height`` image: the shorter side becomes ``resize``, the longer one
    ``int(resize * long / short)`` (truncated, as torchvision)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def imagenet_eval_transform(image: Image.Image, resize: int = 256, crop: int = 224, mode: str = "RGB") -> torch.Tensor:
    """Standard ImageNet evaluation preprocessing of one PIL image, without normalisation.

    Converts to ``mode`` ("RGB", or "L" for grey teachers), resizes the shorter side to ``resize`` (PIL bilinear, which antialiases when
    shrinking; sizes as torchvision ``Resize(int)``), then crops the central ``crop`` x ``crop``
    square (torchvision ``CenterCrop`` placement: ``top = int(round((h - crop) / 2.0))``, same for
    ``left``).

    Returns:
        uint8 tensor (3, crop, crop) RGB (or (1, crop, crop) for mode "L"), values 0..255.

    Raises:
        ValueError: ``crop`` > ``resize`` or a size < 1.
    """
    _check_sizes(resize, crop)
    image = image.convert(mode)
    width, height = image.size
    new_size = resized_size(width, height, resize)
    if new_size != (width, height):
        image = image.resize(new_size, Image.BILINEAR)
    width, height = new_size
    top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.array(image, dtype=np.uint8)
    return torch.from_numpy(pixels if pixels.ndim == 3 else pixels[..., None]).permute(2, 0, 1).contiguous()


def _check_sizes(resize: int, crop: int) -> None:
    if resize < 1 or crop < 1:
        raise ValueError(f"resize and crop must be >= 1, got resize={resize}, crop={crop}")
    if crop > resize:
        raise ValueError(
            f"crop ({crop}) must not exceed resize ({resize}): the shorter side after the "
            f"resize would be smaller than the crop"
        )


def _load_image(source, what: str, resize: int, crop: int) -> torch.Tensor:
    """Open ``source`` (a path or a file object) and transform it; name ``what`` in any error."""
    try:
        with Image.open(source) as image:
            return imagenet_eval_transform(image, resize, crop)
    except Exception as exc:  # truncated or non-image files: say which one
        raise RuntimeError(f"could not decode image {what}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class ImageNetEvalInfo:
    """What ``check_imagenet_eval`` found.

    Attributes:
        kind: "folder" (ImageFolder layout) or "webdataset".
        location: the root as given (folder, shard path or pattern).
        num_images: number of image files (folder), None for webdataset (not counted: that would
            read every shard).
        num_shards: number of shards (webdataset), None for a folder.
        num_classes: number of class folders (folder), None for webdataset.
    """

    kind: str
    location: str
    num_images: int | None = None
    num_shards: int | None = None
    num_classes: int | None = None

    def __str__(self) -> str:
        if self.kind == "folder":
            return f"ImageNet eval folder {self.location}: {self.num_images} images in {self.num_classes} classes"
        return f"ImageNet eval webdataset {self.location}: {self.num_shards} shards"


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url


def _is_shard(name: str) -> bool:
    return name.lower().endswith(_SHARD_SUFFIXES)


def _find_classes(root: Path) -> list[str]:
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _folder_samples(root: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) of every image, in torchvision ``make_dataset`` order. Raises
    FileNotFoundError naming the class folders without any image."""
    samples, empty = [], []
    for label, name in enumerate(classes):
        count = len(samples)
        for dirpath, dirnames, filenames in sorted(os.walk(root / name, followlinks=True)):
            if any(part.startswith(".") for part in Path(dirpath).relative_to(root / name).parts):
                continue
            for fname in sorted(filenames):
                if not fname.startswith(".") and fname.lower().endswith(IMAGE_EXTENSIONS):
                    samples.append((os.path.join(dirpath, fname), label))
        if len(samples) == count:
            empty.append(name)
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise FileNotFoundError(
            f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folder(s) {shown}"
        )
    return samples


def _expand_pattern(pattern: str) -> list[str]:
    from braceexpand import braceexpand  # a dependency of webdataset

    return list(braceexpand(pattern))


def _resolve(root: str | os.PathLike) -> tuple[str, list[str] | None, list[str] | None]:
    """("folder", classes, None) or ("webdataset", None, shards). Cheap: lists directories and
    checks that shard files exist, decodes nothing."""
    text = os.fspath(root)
    path = Path(text).expanduser()
    if path.is_dir():
        with os.scandir(path) as entries:
            entries = list(entries)
        shards = sorted(str(path / e.name) for e in entries if e.is_file() and _is_shard(e.name))
        classes = _find_classes(path)
        if shards and classes:
            raise ValueError(
                f"{path} holds both webdataset shards ({len(shards)} tar files) and class folders "
                f"({len(classes)}); pass a folder with only one of them, or a shard pattern "
                f"such as {path}/imagenet-val-{{000000..000049}}.tar"
            )
        if shards:
            return "webdataset", None, shards
        if not classes:
            raise FileNotFoundError(
                f"{path} holds neither class folders with images (ImageFolder layout "
                f"root/<wnid>/<image>) nor webdataset shards (*.tar)"
            )
        return "folder", classes, None
    if path.is_file():
        if not _is_shard(path.name):
            raise ValueError(
                f"{path} is a file but not a webdataset shard (.tar, .tar.gz, .tgz); pass a "
                f"folder of class folders, a folder of shards, a shard or a brace pattern"
            )
        return "webdataset", None, [str(path)]
    if _is_remote(text):
        return "webdataset", None, _expand_pattern(text)
    expanded = _expand_pattern(text) if "{" in text else [text]
    if expanded != [text]:
        shards = [str(Path(s).expanduser()) for s in expanded]
        missing = [s for s in shards if not Path(s).is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise FileNotFoundError(f"{len(missing)} of the {len(shards)} shards of {text} are missing: {shown}")
        return "webdataset", None, shards
    raise FileNotFoundError(
        f"ImageNet validation data not found: {text} does not exist (expected an "
        f"ImageFolder directory, a folder of webdataset .tar shards, a shard or a "
        f"brace pattern like /data/imagenet-val-{{000000..000049}}.tar)"
    )


def _peek_shard(shard: str) -> None:
    """Read the first sample's member names of one local shard (a few hundred KB at most) and
    check it has an image and a ``cls`` member."""
    names: list[str] = []
    key = None
    try:
        with tarfile.open(shard, mode="r|*") as tar:
            for member in tar:
                if not member.isfile() or os.path.basename(member.name).startswith((".", "__")):
                    continue
                base = os.path.basename(member.name)
                prefix = os.path.join(os.path.dirname(member.name), base.split(".", 1)[0])
                if key is None:
                    key = prefix
                elif prefix != key:
                    break
                names.append(base.split(".", 1)[1].lower() if "." in base else "")
    except tarfile.TarError as exc:
        raise ValueError(f"{shard} is not a readable tar file: {exc}") from exc
    if key is None:
        raise FileNotFoundError(f"{shard} holds no files")
    if not any(n.rsplit(".", 1)[-1] in _WDS_IMAGE_KEYS for n in names) or "cls" not in names:
        raise ValueError(
            f"{shard}: the first sample {key!r} has members {names}; an ImageNet webdataset "
            f"sample needs an image ({', '.join(_WDS_IMAGE_KEYS)}) and a 'cls' (label) member"
        )


def check_imagenet_eval(root: str | os.PathLike, num_classes: int) -> ImageNetEvalInfo:
    """Check that ``root`` holds ImageNet-style validation data, cheaply (directory listings and
    the first member names of the first shard; no image is decoded).

    ``root`` is an ImageFolder directory, a folder of webdataset shards, one shard, or a brace
    pattern of shards (see the module docstring).

    Returns:
        ``ImageNetEvalInfo`` (kind, number of images or shards).

    Raises:
        FileNotFoundError: ``root`` (or a shard of a pattern) is missing, a folder holds no class
            folders and no shards, or a class folder holds no image.
        ValueError: the ImageFolder has a number of class folders other than ``num_classes``; a folder
            holds both class folders and shards; a file that is not a shard; a shard whose first
            sample has no image or no ``cls`` member.
    """
    kind, classes, shards = _resolve(root)
    location = os.fspath(root)
    if kind == "folder":
        if len(classes) != num_classes:
            raise ValueError(
                f"{location} has {len(classes)} class folders, expected {num_classes} (first ones: {classes[:5]})"
            )
        samples = _folder_samples(Path(location).expanduser(), classes)
        return ImageNetEvalInfo("folder", location, num_images=len(samples), num_classes=len(classes))
    if not _is_remote(shards[0]):
        _peek_shard(shards[0])
    return ImageNetEvalInfo("webdataset", location, num_shards=len(shards))


# --------------------------------------------------------------------------------------------
# Loaders


class ImageFolderEval(Dataset):
    """Map-style dataset over (path, label) pairs: item i is (uint8 (3, crop, crop), int label)."""

    def __init__(self, samples: list[tuple[str, int]], resize: int = 256, crop: int = 224):
        _check_sizes(resize, crop)
        self.samples, self.resize, self.crop = list(samples), resize, crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return _load_image(path, path, self.resize, self.crop), label


class _Empty(IterableDataset):
    def __iter__(self):
        return iter(())


def _decode_wds_sample(sample: dict, resize: int, crop: int, num_classes: int | None) -> tuple[torch.Tensor, int]:
    where = f"{sample.get('__key__')!r} of {sample.get('__url__')}"
    image_key = next((k for k in sample if not k.startswith("__") and k.rsplit(".", 1)[-1] in _WDS_IMAGE_KEYS), None)
    if image_key is None or "cls" not in sample:
        members = sorted(k for k in sample if not k.startswith("__"))
        raise ValueError(
            f"webdataset sample {where} has members {members}; it needs an image "
            f"({', '.join(_WDS_IMAGE_KEYS)}) and a 'cls' (label) member"
        )
    raw = sample["cls"]
    try:
        label = int(raw.decode("utf-8").strip() if isinstance(raw, (bytes, bytearray)) else raw)
    except ValueError as exc:
        raise ValueError(f"webdataset sample {where}: 'cls' is {raw[:32]!r}, not an integer label") from exc
    if num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f"webdataset sample {where}: label {label} outside [0, {num_classes})")
    return _load_image(io.BytesIO(sample[image_key]), f"{image_key} of {where}", resize, crop), label


def _collate(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*samples)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def imagenet_eval_loader(
    root: str | os.PathLike,
    rank: int,
    world_size: int,
    batch_size: int,
    resize: int = 256,
    crop: int = 224,
    num_workers: int | None = None,
    num_classes: int | None = None,
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of the ImageNet validation images, in batches, with the standard
    "resize 256 / center crop 224" evaluation protocol (``imagenet_eval_transform``).

    Yields ``(images, labels)``: images uint8 (B, 3, crop, crop) RGB 0..255 (not normalised),
    labels int64 (B,); B = ``batch_size`` except for a smaller last batch (for webdataset, the last
    batch of each DataLoader worker). The shares of ranks 0..world_size-1 together hold every image
    exactly once, in shares that may differ in size by a rank (sum counts across ranks; do not
    expect equal batch counts per rank):

    * ImageFolder: ``files[rank::world_size]`` in torchvision order, through a DataLoader over a
      map-style dataset (``ImageFolderEval``), no shuffling.
    * webdataset: ``shards[rank::world_size]``, split here, NOT by torch.distributed (which need not
      be initialised) and not by ``accelerator.prepare`` (do not prepare this loader); in file order
      (``shardshuffle=False``), split again across DataLoader workers (at most one worker per shard).
      A rank without shards yields nothing. Labels come from the ``cls`` member.

    Args:
        root: see ``check_imagenet_eval`` (call it first for clear errors on the class count).
        rank, world_size: this process's index and the number of processes (0 <= rank < world_size).
        batch_size: images per batch (>= 1).
        resize, crop: shorter side after the resize, side of the centre crop (crop <= resize).
        num_workers: DataLoader workers; default min(8, os.cpu_count()).
        num_classes: if given, a webdataset label outside [0, num_classes) raises ValueError.

    Returns:
        an iterable (a torch DataLoader) that can be iterated more than once.

    Raises:
        FileNotFoundError, ValueError: as ``check_imagenet_eval``, and ValueError for bad
        rank/world_size/batch_size/sizes. While iterating: RuntimeError naming an image that cannot be
        decoded; ValueError for a webdataset sample without an image or an integer ``cls``.
    """
    _check_loader_args(rank, world_size, batch_size, resize, crop)
    workers = _default_workers() if num_workers is None else max(0, int(num_workers))
    kind, classes, shards = _resolve(root)
    if kind == "folder":  # this rank's files[rank::world_size]
        samples = _folder_samples(Path(os.fspath(root)).expanduser(), classes)
        return _folder_loader(samples[rank::world_size], batch_size, resize, crop, workers)
    return _wds_loader(shards[rank::world_size], batch_size, resize, crop, workers, num_classes)


def _check_loader_args(rank: int, world_size: int, batch_size: int, resize: int, crop: int) -> None:
    """Raise ValueError for a bad rank/world_size, batch_size or resize/crop, in that order."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_sizes(resize, crop)


def _folder_loader(samples: list, batch_size: int, resize: int, crop: int, workers: int) -> DataLoader:
    """The DataLoader over one rank's (path, label) ``samples`` of an ImageFolder tree."""
    dataset = ImageFolderEval(samples, resize, crop)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, drop_last=False)


def _wds_loader(
    mine: list[str], batch_size: int, resize: int, crop: int, workers: int, num_classes: int | None
) -> DataLoader:
    """The DataLoader over one rank's webdataset shards ``mine`` (empty if none)."""
    import webdataset as wds

    if not mine:  # webdataset's shard list cannot be empty
        return DataLoader(_Empty(), batch_size=None)
    # nodesplitter=None: the default (single_node_only) raises under RANK/WORLD_SIZE or an initialised
    # process group, and the split by rank is done above. The worker split stays (split_by_worker).
    dataset = (
        wds.WebDataset(mine, shardshuffle=False, empty_check=False, nodesplitter=None)
        .map(functools.partial(_decode_wds_sample, resize=resize, crop=crop, num_classes=num_classes))
        .batched(batch_size, collation_fn=_collate, partial=True)
    )
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=min(workers, len(mine)))
