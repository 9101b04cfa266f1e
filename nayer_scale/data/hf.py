"""Evaluation sets through Hugging Face ``datasets`` (``eval.dataset=hf``).

``eval.hf_path`` names the set; what it is decides how it is opened:

* a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` -> ``datasets.load_from_disk``;
* a ``.parquet`` or ``.arrow`` file, or a glob of them (``/data/val-*.parquet``) -> the ``parquet`` /
  ``arrow`` builder, the files being the split named by ``eval.hf_split`` (default "test");
* any other folder -> the ``imagefolder`` builder (``<split>/<class>/<image>`` or ``<class>/<image>``,
  labels from the sorted folder names);
* anything else is a hub id (``ILSVRC/imagenet-1k``), loaded with ``datasets.load_dataset``;
  ``eval.hf_streaming=true`` streams it instead of downloading the whole split first.

``eval.hf_split`` picks the split (default: "test", else "validation", else the only split),
``eval.hf_image_column`` / ``eval.hf_label_column`` the columns (default: the one ``Image`` column
and the one ``ClassLabel`` column of the features; an integer column may be named explicitly).

Images are decoded with PIL, converted to the teacher's mode ("L" for a 1-channel teacher, "RGB" for a
3-channel one: stray grey or CMYK images of a colour set are converted, as in ImageNet's val split),
resized (shorter side to ``resize``) and centre-cropped to the teacher's input size with
``nayer_scale.data.imagenet_eval_transform``; with ``eval.resize=0`` an image already at the
teacher's size is used as it is and others are resized to ``round(image_size / 0.875)``.
Each process takes its part of the split with ``datasets.distributed.split_dataset_by_node``
(contiguous rows of a map-style set; shards, or every ``world_size``-th example, of a streamed one),
so counts summed over processes cover every image once.

``check_hf_eval`` checks everything that can be checked without reading the whole set, before any
work: the split and the columns exist, the labels are the teacher's classes (ClassLabel size, or the
min / max of an integer column of a map-style set), the class names agree with the teacher's, the
first image is grey or colour as the teacher's input is.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..extras import require
from .imagenet import imagenet_eval_transform

__all__ = ["HFEvalInfo", "check_hf_eval", "hf_eval_loader", "open_hf_dataset"]

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_SPLIT_PREFERENCE = ("test", "validation", "val", "valid")
_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow"}


def _preview(items: list, n: int = 10) -> str:
    shown = ", ".join(map(str, items[:n]))
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > n else ''}]"


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _looks_local(text: str) -> bool:
    """A path rather than a hub id (``name`` or ``org/name``)."""
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def _pick_split(available: list[str], split: str, path: str) -> str:
    """The split to read: ``split`` if given (ValueError naming the available ones if missing), else
    test / validation / the only split."""
    if split:
        if split not in available:
            raise ValueError(
                f"eval.hf_path={path} has no split {split!r}; its splits are {available}: set "
                f"eval.hf_split to one of them"
            )
        return split
    for name in _SPLIT_PREFERENCE:
        if name in available:
            return name
    if len(available) == 1:
        return available[0]
    raise ValueError(
        f"eval.hf_path={path} has the splits {available} and none is called test or validation: "
        f"set eval.hf_split to the held-out one"
    )


def _open_folder(datasets, local: Path, path: str, split: str, streaming: bool) -> tuple[Any, str]:
    """``open_hf_dataset`` of a folder: a ``save_to_disk`` DatasetDict or Dataset, else an imagefolder."""
    if (local / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(local))
        name = _pick_split(list(dd), split, path)
        ds = dd[name]
    elif (local / "state.json").is_file() and (local / "dataset_info.json").is_file():
        ds = datasets.load_from_disk(str(local))
        recorded = str(ds.split) if ds.split is not None else None
        if split and recorded and split != recorded:
            raise ValueError(
                f"eval.hf_path={path} was saved from split {recorded!r}, not {split!r}: set "
                f"eval.hf_split={recorded} (or leave it empty)"
            )
        name = split or recorded or "saved"
    else:
        dd = datasets.load_dataset("imagefolder", data_dir=str(local), streaming=streaming)
        name = _pick_split(list(dd), split, path)
        ds = dd[name]
    if streaming and isinstance(ds, datasets.Dataset):
        ds = ds.to_iterable_dataset(num_shards=max(1, min(64, len(ds) // 1000)))
    return ds, name


def open_hf_dataset(path: str, split: str = "", streaming: bool = False) -> tuple[Any, str]:
    """Open one split of a ``datasets`` set (see the module docstring for what ``path`` may be).

    Args:
        path: hub id, ``save_to_disk`` folder, parquet / arrow file or glob, or an imagefolder.
        split: split name; "" picks test, else validation, else the only split.
        streaming: stream a hub set (``IterableDataset``) instead of downloading the split.

    Returns:
        (``datasets.Dataset`` or ``datasets.IterableDataset``, the split's name).

    Raises:
        FileNotFoundError: a local path (or every file of a glob) that does not exist.
        ValueError: the split is missing (the message lists the splits), or a hub set cannot be loaded
            (the message says how to use it offline).
    """
    datasets = require("datasets", "hf", "eval.dataset=hf")

    text = os.path.expanduser(path)
    local = Path(text)
    if local.is_dir():
        return _open_folder(datasets, local, path, split, streaming)
    suffix = next((s for s in _FILE_BUILDERS if text.lower().endswith(s)), None)
    if local.is_file() or _is_glob(text) or suffix:
        if suffix is None:
            raise ValueError(
                f"eval.hf_path={path} is a file but not a .parquet or .arrow file: pass a parquet / "
                f"arrow file or glob, a save_to_disk folder, an image folder or a hub id"
            )
        if not (local.is_file() or glob.glob(text)):
            raise FileNotFoundError(
                f"eval.hf_path={path}: no such file{' (the glob matches nothing)' if _is_glob(text) else ''}"
            )
        name = split or "test"
        dd = datasets.load_dataset(_FILE_BUILDERS[suffix], data_files={name: text}, streaming=streaming)
        return dd[name], name
    if _looks_local(text):
        raise FileNotFoundError(
            f"eval.hf_path={path} does not exist (expected a save_to_disk folder, a parquet / "
            f"arrow file or glob, an image folder, or a hub id such as ILSVRC/imagenet-1k)"
        )
    advice = (
        f"if this machine is offline, run `datasets.load_dataset({path!r}, split=...).save_to_disk(folder)` "
        f"on one with internet and pass that folder as eval.hf_path"
    )
    try:
        available = list(datasets.get_dataset_split_names(path))
    except Exception as err:  # offline, unknown or gated repo
        raise ValueError(
            f"cannot read the splits of hub dataset eval.hf_path={path} ({type(err).__name__}: {err}); {advice}"
        ) from err
    name = _pick_split(available, split, path)
    try:
        return datasets.load_dataset(path, split=name, streaming=streaming), name
    except Exception as err:
        raise ValueError(
            f"cannot load split {name} of hub dataset eval.hf_path={path} ({type(err).__name__}: {err}); {advice}"
        ) from err


def _features(ds) -> dict:
    features = ds.features
    if features is None and hasattr(ds, "_resolve_features"):  # a streamed set without recorded features
        features = ds._resolve_features().features
    return dict(features or {})


def _first(ds) -> dict:
    datasets = require("datasets", "hf", "eval.dataset=hf")

    if isinstance(ds, datasets.Dataset):
        if len(ds) == 0:
            raise ValueError("the split is empty")
        return ds[0]
    for example in ds.take(1):
        return example
    raise ValueError("the split is empty")


@dataclass(frozen=True)
class HFEvalInfo:
    """What ``check_hf_eval`` found.

    Attributes:
        split: the split's name; image_column, label_column: the columns read;
        label_names: the ClassLabel names (None for an integer column);
        num_rows: images in the split (None when streamed); mode: PIL mode of the first image.
    """

    path: str
    split: str
    image_column: str
    label_column: str
    label_names: tuple[str, ...] | None
    num_rows: int | None
    mode: str

    def __str__(self) -> str:
        rows = f"{self.num_rows} images" if self.num_rows is not None else "streamed"
        return f"datasets eval set {self.path} [{self.split}]: {rows}, columns {self.image_column}/{self.label_column}"


def _normalised_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def _same_class(a: str, b: str) -> bool:
    """Whether two class names name the same class: equal up to case, spaces / underscores / hyphens,
    or the first of comma-separated synonyms ("tench, Tinca tinca" and "tench")."""
    x, y = _normalised_name(a), _normalised_name(b)
    return x == y or x.split(",")[0].strip() == y.split(",")[0].strip()


def _columns(e, features: dict, path: str) -> tuple[str, str]:
    datasets = require("datasets", "hf", "eval.dataset=hf")

    columns = list(features)
    image_col, label_col = e.hf_image_column, e.hf_label_column
    if image_col:
        if image_col not in features:
            raise ValueError(
                f"eval.hf_path={path} has no column {image_col!r}; its columns are {columns}: set "
                f"eval.hf_image_column to the image column"
            )
    else:
        found = [c for c, f in features.items() if isinstance(f, datasets.Image)]
        if len(found) != 1:
            raise ValueError(
                f"eval.hf_path={path} has {len(found)} Image columns {found} among {columns}: set "
                f"eval.hf_image_column to the one to evaluate on"
            )
        image_col = found[0]
    if label_col:
        if label_col not in features:
            raise ValueError(
                f"eval.hf_path={path} has no column {label_col!r}; its columns are {columns}: set "
                f"eval.hf_label_column to the label column"
            )
    else:
        found = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
        if len(found) != 1:
            raise ValueError(
                f"eval.hf_path={path} has {len(found)} ClassLabel columns {found} among {columns}: set "
                f"eval.hf_label_column to the column of integer class labels"
            )
        label_col = found[0]
    label = features[label_col]
    if not (
        isinstance(label, datasets.ClassLabel)
        or (isinstance(label, datasets.Value) and label.dtype.startswith(("int", "uint")))
    ):
        raise ValueError(
            f"eval.hf_label_column={label_col!r} of eval.hf_path={path} holds {label}, not integer "
            f"class labels: set eval.hf_label_column to a ClassLabel or integer column"
        )
    return image_col, label_col


def check_hf_eval(
    eval_cfg, num_classes: int, in_channels: int | None = None, class_names: list[str] | None = None, dataset=None
) -> HFEvalInfo:
    """Check an ``eval.dataset=hf`` set against the teacher before any work (reads the features and
    decodes the first image; a map-style integer label column is scanned with one arrow min/max).

    Args:
        eval_cfg: the ``EvalConfig`` (``hf_path``, ``hf_split``, ``hf_image_column``,
            ``hf_label_column``, ``hf_streaming``, ``hf_match_class_names``).
        num_classes: the teacher's number of classes K; labels must lie in [0, K).
        in_channels: the teacher's input channels (1: grey, 3: colour); None skips the mode check.
        class_names: the teacher's class names; compared with the ClassLabel names when
            ``eval.hf_match_class_names`` (None skips the comparison).
        dataset: an already opened split (skips ``open_hf_dataset``).

    Returns:
        ``HFEvalInfo``.

    Raises:
        FileNotFoundError: a local ``eval.hf_path`` that does not exist.
        ValueError: a missing split or column (the message lists those there are); a label column that
            is not integer; labels outside [0, K); class names that disagree with the teacher's (both
            lists are named); grey images for a colour teacher or the reverse; an empty split.
    """
    e = eval_cfg
    path = e.hf_path
    ds, split = dataset if dataset is not None else open_hf_dataset(path, e.hf_split, e.hf_streaming)
    features = _features(ds)
    image_col, label_col = _columns(e, features, path)
    datasets = require("datasets", "hf", "eval.dataset=hf")

    label = features[label_col]
    names = tuple(label.names) if isinstance(label, datasets.ClassLabel) else None
    where = f"eval.hf_path={path} [{split}]"
    _check_labels(ds, datasets, names, label_col, num_classes, where)
    if names is not None and class_names is not None and e.hf_match_class_names:
        _check_class_names(names, class_names, where)
    try:
        example = _first(ds)
    except ValueError as err:
        raise ValueError(f"{where}: {err}; pick another eval.hf_split") from None
    image = example[image_col]
    mode = getattr(image, "mode", None)
    if mode is None:
        raise ValueError(
            f"eval.hf_image_column={image_col!r} of eval.hf_path={path} holds {type(image).__name__}, "
            f"not images: set eval.hf_image_column to the Image column"
        )
    if in_channels is not None:
        _check_image_mode(mode, in_channels, where)
    num_rows = len(ds) if isinstance(ds, datasets.Dataset) else None
    return HFEvalInfo(path, split, image_col, label_col, names, num_rows, mode)


_FIX_LABELS = (
    "evaluate on the set the teacher was trained for, or set eval.hf_label_column to the column "
    "that holds the teacher's class indices"
)


def _check_labels(ds, datasets, names: tuple | None, label_col: str, num_classes: int, where: str) -> None:
    """Refuse labels outside the teacher's [0, K): a ClassLabel with more names, or (map-style, integer
    column) a min / max outside the range, read from the arrow column without decoding any image."""
    if names is not None and len(names) > num_classes:
        raise ValueError(
            f"{where} has {len(names)} classes in {label_col!r} but the teacher "
            f"has {num_classes}: labels {num_classes}..{len(names) - 1} are outside the teacher's "
            f"classes; {_FIX_LABELS}"
        )
    if names is None and isinstance(ds, datasets.Dataset) and len(ds):
        values = ds.data.column(label_col).to_numpy()
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{where} has labels in [{low}, {high}] in {label_col!r}, the "
                f"teacher has classes 0..{num_classes - 1}: {_FIX_LABELS}"
            )


def _check_class_names(names: tuple, class_names: list[str], where: str) -> None:
    """Refuse ClassLabel names that are not the teacher's (``_same_class``), naming the first difference."""
    if len(names) != len(class_names) or not all(map(_same_class, names, class_names)):
        first = next(
            (i for i, (a, b) in enumerate(zip(names, class_names)) if not _same_class(a, b)),
            min(len(names), len(class_names)),
        )
        raise ValueError(
            f"the class names of {where} ({len(names)}: {_preview(list(names))}) disagree "
            f"with the teacher's ({len(class_names)}: {_preview(list(class_names))}), first at index {first}. "
            "If the dataset's label i is the teacher's class i under other names (e.g. wnids), set "
            "eval.hf_match_class_names=false; otherwise evaluate on the teacher's own dataset or fix "
            "teacher.class_names"
        )


def _check_image_mode(mode: str, in_channels: int, where: str) -> None:
    """Refuse grey images for a colour teacher, colour images for a grey one, or a teacher that is neither."""
    if in_channels not in (1, 3):
        raise ValueError(
            f"eval.dataset=hf decodes images to grey (1 channel) or RGB (3 channels); the teacher "
            f"takes {in_channels}: use another eval.dataset"
        )
    grey = mode in _GREY_MODES
    if grey and in_channels == 3:
        raise ValueError(
            f"{where} has grey images (PIL mode {mode}) but the teacher takes "
            f"colour input (teacher.in_channels=3): evaluate on the colour set the teacher was "
            f"trained for, or check teacher.in_channels"
        )
    if not grey and in_channels == 1:
        raise ValueError(
            f"{where} has colour images (PIL mode {mode}) but the teacher takes "
            f"grey input (teacher.in_channels=1): evaluate on the grey set the teacher was trained "
            f"for, or check teacher.in_channels"
        )


class _Transform:
    """Picklable per-example transform (DataLoader workers): PIL image -> uint8 (C, crop, crop)."""

    def __init__(
        self, image_col: str, label_col: str, mode: str, resize: int, crop: int, num_classes: int, where: str
    ) -> None:
        self.image_col, self.label_col, self.mode = image_col, label_col, mode
        self.resize, self.crop, self.num_classes, self.where = resize, crop, num_classes, where

    def __call__(self, example: dict) -> tuple[torch.Tensor, int]:
        image, label = example[self.image_col], int(example[self.label_col])
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"{self.where}: label {label} outside the teacher's classes 0..{self.num_classes - 1}; "
                "set eval.hf_label_column to the column of the teacher's class indices"
            )
        if self.resize == 0:  # eval.resize=0: images at the teacher's size pass unchanged
            size = self.crop if image.size == (self.crop, self.crop) else round(self.crop / 0.875)
        else:
            size = self.resize
        return imagenet_eval_transform(image, size, self.crop, self.mode), label


class _MapItems(Dataset):
    def __init__(self, ds, transform: _Transform) -> None:
        self.ds, self.transform = ds, transform

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.ds[index])


def _collate(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*samples)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _batched(examples: Iterable[dict], transform: _Transform, batch_size: int) -> Iterator:
    batch = []
    for example in examples:
        batch.append(transform(example))
        if len(batch) == batch_size:
            yield _collate(batch)
            batch = []
    if batch:
        yield _collate(batch)


class _Streamed:
    """Re-iterable batches of a streamed split (decoded in this process)."""

    def __init__(self, ds, transform: _Transform, batch_size: int) -> None:
        self.ds, self.transform, self.batch_size = ds, transform, batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _batched(self.ds, self.transform, self.batch_size)


def hf_eval_loader(
    eval_cfg,
    in_channels: int,
    image_size: int,
    num_classes: int,
    rank: int = 0,
    world_size: int = 1,
    class_names: list[str] | None = None,
):
    """This process's batches of an ``eval.dataset=hf`` set (checked first with ``check_hf_eval``).

    Yields ``(images, labels)``: images uint8 (B, in_channels, image_size, image_size), 0..255, not
    normalised; labels int64 (B,). Process ``rank`` reads ``split_dataset_by_node(ds, rank,
    world_size)``: the parts of all processes hold every image once (sum the counts).

    Args:
        eval_cfg: the ``EvalConfig`` (also ``batch_size``, ``resize``: shorter side before the centre
            crop, 0 = see the module docstring; ``num_workers``: decoding workers of a map-style set).
        in_channels: 1 (decoded as grey) or 3 (RGB); image_size: the crop side; num_classes: K.
        class_names: the teacher's, for ``check_hf_eval``.

    Returns:
        a re-iterable of batches (a torch DataLoader for a map-style set).

    Raises:
        as ``check_hf_eval``; while iterating, ValueError for a label outside [0, K) of a streamed set.
    """
    HFDataset = require("datasets", "hf", "eval.dataset=hf").Dataset
    split_dataset_by_node = require("datasets.distributed", "hf", "eval.dataset=hf").split_dataset_by_node

    e = eval_cfg
    ds, split = open_hf_dataset(e.hf_path, e.hf_split, e.hf_streaming)
    info = check_hf_eval(e, num_classes, in_channels, class_names, dataset=(ds, split))
    ds = split_dataset_by_node(
        ds.select_columns([info.image_column, info.label_column]), rank=rank, world_size=world_size
    )
    transform = _Transform(
        info.image_column,
        info.label_column,
        "L" if in_channels == 1 else "RGB",
        e.resize,
        image_size,
        num_classes,
        f"eval.hf_path={e.hf_path} [{split}]",
    )
    if isinstance(ds, HFDataset):
        workers = min(int(e.num_workers), max(0, len(ds) // max(1, e.batch_size)))
        return DataLoader(
            _MapItems(ds, transform),
            batch_size=e.batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate,
            drop_last=False,
        )
    return _Streamed(ds, transform, e.batch_size)
