"""ImageNet validation data (nayer_scale.data.imagenet): ImageFolder and webdataset sources, the
"resize 256 / center crop 224" transform, the split by rank and the errors."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from nayer_scale.data import (
    ImageNetEvalInfo,
    check_imagenet_eval,
    imagenet_eval_loader,
    imagenet_eval_transform,
    resized_size,
)

WNIDS = ["n01440764", "n01443537", "n01484850"]
SIZES = [(300, 200), (180, 260), (240, 240)]  # (width, height)


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """9 images (3 classes x 3, sizes 300x200, 180x260, 240x240; PNG and JPEG) as an ImageFolder
    and as 2 webdataset shards (5 + 4 samples) holding the same bytes, in the same order."""
    root = tmp_path_factory.mktemp("imagenet")
    folder, shards = root / "val", root / "shards"
    rng = np.random.default_rng(0)
    records = []  # (wnid, file name, bytes, label), in ImageFolder order
    for label, wnid in enumerate(WNIDS):
        for i, (w, h) in enumerate(SIZES):
            fmt, ext = ("PNG", "png") if (label + i) % 2 == 0 else ("JPEG", "JPEG")
            data = encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), fmt)
            records.append((wnid, f"ILSVRC2012_val_{label * 3 + i:08d}.{ext}", data, label))
    for wnid in reversed(WNIDS):  # creation order must not matter
        (folder / wnid).mkdir(parents=True)
    for wnid, name, data, _ in records:
        (folder / wnid / name).write_bytes(data)
    shards.mkdir()
    for shard, part in enumerate((records[:5], records[5:])):
        with wds.TarWriter(str(shards / f"imagenet-val-{shard:06d}.tar")) as sink:
            for wnid, name, data, label in part:
                key = "png" if name.endswith("png") else "jpg"
                sink.write({"__key__": name.split(".")[0], key: data, "cls": str(label).encode()})
    return folder, shards, records


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    if not batches:
        return torch.empty(0, 3, 224, 224, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    for images, labels in batches:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 224, 224)
        assert labels.dtype == torch.int64 and labels.shape == (len(images),)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def multiset(images: torch.Tensor, labels: torch.Tensor) -> Counter:
    return Counter((hash(image.numpy().tobytes()), int(label)) for image, label in zip(images, labels))


def test_resized_size_follows_torchvision_resize_int():
    assert resized_size(300, 200, 256) == (384, 256)
    assert resized_size(180, 260, 256) == (256, 369)  # 256 * 260 / 180 = 369.8, truncated
    assert resized_size(500, 375, 256) == (341, 256)  # a typical ImageNet val image
    assert resized_size(240, 240, 256) == (256, 256)


def test_transform_keeps_the_hand_computed_centre():
    # 512x256: rows 0..15 white, then left half red and right half blue.
    image = np.zeros((256, 512, 3), np.uint8)
    image[:, :256, 0] = 255
    image[:, 256:, 2] = 255
    image[:16] = 255
    out = imagenet_eval_transform(Image.fromarray(image))  # shorter side is already 256: no resize
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8
    # top = round((256 - 224) / 2) = 16 drops exactly the white rows; left = round(288 / 2) = 144, so
    # crop columns 0..111 are source 144..255 (red) and 112..223 are 256..367 (blue).
    red, blue = torch.tensor([255, 0, 0], dtype=torch.uint8), torch.tensor([0, 0, 255], dtype=torch.uint8)
    assert (out[:, :, :112] == red[:, None, None]).all() and (out[:, :, 112:] == blue[:, None, None]).all()

    # resize 128 -> 256x128 (bilinear 2x shrink), crop 64: top 32, left 96; the edge lands on crop column 32
    out = imagenet_eval_transform(Image.fromarray(image), resize=128, crop=64)
    assert out.shape == (3, 64, 64)
    assert (out[:, :, :31] == red[:, None, None]).all() and (out[:, :, 34:] == blue[:, None, None]).all()
    assert 0 < out[0, 0, 32] < 255  # the antialiased edge


def test_center_crop_rounds_like_torchvision():
    # 227 x 225 with R = x and G = y: shorter side 225 = resize, so no resize; top = round(0.5) = 0 and
    # left = round(1.5) = 2 (Python's round, as torchvision's CenterCrop).
    y, x = np.mgrid[0:225, 0:227]
    image = np.stack([x, y, np.zeros_like(x)], -1).astype(np.uint8)
    out = imagenet_eval_transform(Image.fromarray(image), resize=225, crop=224)
    assert out[0, 0, 0] == 2 and out[1, 0, 0] == 0
    assert torch.equal(out[0, 5], torch.arange(2, 226, dtype=torch.uint8))
    with pytest.raises(ValueError, match="must not exceed resize"):
        imagenet_eval_transform(Image.fromarray(image), resize=200, crop=224)


def test_imagefolder_shapes_labels_and_order(imagenet):
    folder, _, records = imagenet
    info = check_imagenet_eval(folder, num_classes=3)
    assert info == ImageNetEvalInfo("folder", str(folder), num_images=9, num_classes=3)
    images, labels = collect(imagenet_eval_loader(folder, 0, 1, batch_size=4, num_workers=0))
    assert images.shape == (9, 3, 224, 224)
    assert labels.tolist() == [r[3] for r in records] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # a PNG goes through losslessly: the loader equals the transform applied by hand
    first = np.array(Image.open(io.BytesIO(records[0][2])))
    assert torch.equal(images[0], imagenet_eval_transform(Image.fromarray(first)))
    # DataLoader workers keep the map-style order
    assert torch.equal(collect(imagenet_eval_loader(folder, 0, 1, batch_size=4, num_workers=2))[0], images)


def test_webdataset_matches_imagefolder_exactly(imagenet):
    folder, shards, _ = imagenet
    info = check_imagenet_eval(shards, num_classes=1000)  # the class count cannot be checked cheaply
    assert info.kind == "webdataset" and info.num_shards == 2 and info.num_images is None
    ref_images, ref_labels = collect(imagenet_eval_loader(folder, 0, 1, batch_size=4, num_workers=0))
    images, labels = collect(imagenet_eval_loader(shards, 0, 1, batch_size=4, num_workers=0))
    assert torch.equal(labels, ref_labels) and torch.equal(images, ref_images)
    # the same through 2 DataLoader workers (one shard each), in any order
    images, labels = collect(imagenet_eval_loader(shards, 0, 1, batch_size=4, num_workers=2))
    assert multiset(images, labels) == multiset(ref_images, ref_labels)


@pytest.mark.parametrize("source", ["folder", "shards"])
def test_ranks_cover_every_image_once(imagenet, source):
    folder, shards, _ = imagenet
    root = folder if source == "folder" else shards
    reference = multiset(*collect(imagenet_eval_loader(folder, 0, 1, batch_size=16, num_workers=0)))
    assert sum(reference.values()) == 9 and len(reference) == 9
    for world_size in (2, 3):
        parts = [
            collect(imagenet_eval_loader(root, rank, world_size, batch_size=2, num_workers=0))
            for rank in range(world_size)
        ]
        counts = [len(p[1]) for p in parts]
        union = sum((multiset(*p) for p in parts), Counter())
        assert union == reference, (source, world_size)
        if source == "folder":
            assert counts == [len(range(r, 9, world_size)) for r in range(world_size)]
        else:  # 2 shards of 5 and 4 samples: with 3 ranks the last one has none and yields nothing
            assert counts == ([5, 4] if world_size == 2 else [5, 4, 0])


def test_webdataset_ignores_distributed_environment(imagenet, monkeypatch):
    # webdataset's default nodesplitter raises under RANK/WORLD_SIZE; the split is ours
    _, shards, _ = imagenet
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert len(collect(imagenet_eval_loader(shards, 0, 1, batch_size=8, num_workers=0))[1]) == 9


def test_brace_pattern_and_single_shard(imagenet):
    _, shards, _ = imagenet
    pattern = str(shards / "imagenet-val-{000000..000001}.tar")
    assert check_imagenet_eval(pattern, 1000).num_shards == 2
    labels = collect(imagenet_eval_loader(pattern, 0, 1, batch_size=3, num_workers=0))[1]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    single = shards / "imagenet-val-000001.tar"
    assert check_imagenet_eval(single, 1000).num_shards == 1
    assert collect(imagenet_eval_loader(single, 0, 1, batch_size=3, num_workers=0))[1].tolist() == [1, 2, 2, 2]
    with pytest.raises(FileNotFoundError, match="1 of the 3 shards"):
        check_imagenet_eval(str(shards / "imagenet-val-{000000..000002}.tar"), 1000)


def test_clear_errors(imagenet, tmp_path):
    folder, shards, records = imagenet
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_imagenet_eval(tmp_path / "nowhere", 1000)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        imagenet_eval_loader(tmp_path / "nowhere", 0, 1, batch_size=4)
    with pytest.raises(ValueError, match="has 3 class folders, expected 1000"):
        check_imagenet_eval(folder, 1000)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="neither class folders"):
        check_imagenet_eval(empty, 1000)
    (empty / "n01440764").mkdir()
    (empty / "n01440764" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="no image files .* n01440764"):
        check_imagenet_eval(empty, 1)
    (tmp_path / "x.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="both webdataset shards"):
        check_imagenet_eval(tmp_path, 1)
    with pytest.raises(ValueError, match="not a webdataset shard"):
        check_imagenet_eval(folder / WNIDS[0] / records[0][1], 1000)
    with pytest.raises(ValueError, match="rank < world_size"):
        imagenet_eval_loader(folder, 2, 2, batch_size=4)
    # a raw tar of JPEGs (no cls member) is caught without decoding anything
    raw = tmp_path / "raw" / "ILSVRC2012_img_val.tar"
    raw.parent.mkdir()
    with wds.TarWriter(str(raw)) as sink:
        sink.write({"__key__": "ILSVRC2012_val_00000001", "jpeg": records[1][2]})
    with pytest.raises(ValueError, match="needs an image .* and a 'cls'"):
        check_imagenet_eval(raw, 1000)
    with pytest.raises(ValueError, match="needs an image .* and a 'cls'"):
        list(imagenet_eval_loader(raw, 0, 1, batch_size=4, num_workers=0))
    with pytest.raises(ValueError, match=r"label 2 outside \[0, 2\)"):
        list(imagenet_eval_loader(shards, 0, 1, batch_size=4, num_workers=0, num_classes=2))


def test_hidden_folders_and_files_are_skipped(tmp_path):
    root = tmp_path / "val"
    for name in ("n0", "n1", ".ipynb_checkpoints"):
        (root / name).mkdir(parents=True)
    data = encode(np.full((250, 260, 3), 7, np.uint8), "PNG")
    for name in ("n0/a.png", "n1/b.PNG", "n1/._b.PNG", ".ipynb_checkpoints/c.png"):
        (root / name).write_bytes(data if "._" not in name else b"\0\5\26\7 AppleDouble")
    assert check_imagenet_eval(root, 2).num_images == 2
    labels = collect(imagenet_eval_loader(Path(root), 0, 1, batch_size=4, num_workers=0))[1]
    assert labels.tolist() == [0, 1]
