"""ImageNet scale on CPU: the real entry point launch/imagenet_r50.py with its smoke preset, one and
two processes (DDP over gloo), rotating class slices, the 224 px generator and augmentation, the
memory bank read from its shards, SIGUSR1 to one process and SIGKILL of a whole run mid-epoch.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_imagenet_scale_runs.py."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from nayer_scale.augment import BatchAugment, random_resized_crop, random_roll
from nayer_scale.memory import MemoryBank
from nayer_scale.recipes import get_preset
from nayer_scale.synthesis import Generator, batches_before_epoch, rotating_class_slice

# ------------------------------------------------------------------------------------------------
# Rotating class slices


@pytest.mark.parametrize("batch, classes, world", [(256, 1000, 8), (16, 1000, 2), (300, 1000, 3), (7, 10, 1)])
def test_rotating_slices_cover_every_class_equally(batch, classes, world):
    per_process = [1, 1, 3, 3, 3]  # batches per epoch: 2 warm-up epochs with 1, then 3
    counts: Counter = Counter()
    slots = []
    for epoch, n in enumerate(per_process):
        for b in range(n):
            step_labels = []
            for rank in range(world):
                slot = (batches_before_epoch(epoch, 2, 1, 3) + b) * world + rank
                slots.append(slot)
                labels = rotating_class_slice(slot, batch, classes)
                assert labels.shape == (batch,) and labels.dtype == torch.int64
                step_labels.append(labels)
                counts.update(labels.tolist())
            if world * batch <= classes:  # the processes of one step synthesise distinct classes
                assert len(set(torch.cat(step_labels).tolist())) == world * batch
        # after any number of slots the counts differ by at most one
        assert max(counts.values()) - min(counts.get(c, 0) for c in range(classes)) <= 1
    assert sorted(slots) == list(range(len(slots)))  # every slot exactly once: no gap, no overlap
    total = len(slots) * batch
    if total % classes == 0:
        assert set(counts.values()) == {total // classes}


def test_trainer_uses_slices_below_k_and_class_copies_above(tmp_path):
    from nayer_scale.synthesis import class_ordered_labels

    g = torch.Generator().manual_seed(0)
    labels = class_ordered_labels(25, 10, g)
    assert labels[:20].tolist() == list(range(10)) * 2 and len(labels) == 25
    assert rotating_class_slice(3, 4, 10).tolist() == [2, 3, 4, 5]  # slot 3 starts at 12 mod 10
    with pytest.raises(ValueError):
        rotating_class_slice(-1, 4, 10)


# ------------------------------------------------------------------------------------------------
# 224 px generator and augmentation


def test_imagenet_generator_architecture():
    gen = Generator(1000, 224, 3, 64)
    assert gen.fc.out_features == 128 * 14 * 14
    convs = [m for m in gen.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (128, 128),
        (128, 128),
        (128, 64),
        (64, 64),
        (64, 64),
        (64, 3),
    ]
    with torch.no_grad():
        out = gen(torch.randn(1, 1000))
    assert out.shape == (1, 3, 224, 224) and 0 <= out.min() and out.max() <= 1


def test_roll_and_resized_crop():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    rolled = random_roll(x, 3, g)
    for i in range(2):  # each sample is a cyclic shift of itself
        assert any(
            torch.equal(rolled[i], torch.roll(x[i], (dy, dx), (1, 2))) for dy in range(-3, 4) for dx in range(-3, 4)
        )
    # area 1 and ratio 1: the identity (up to bilinear rounding); flip mirrors it
    same = random_resized_crop(x, (1.0, 1.0), (1.0, 1.0))
    torch.testing.assert_close(same, x, atol=1e-4, rtol=0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    aug = BatchAugment((0.5,) * 3, (0.25,) * 3, roll=2, resized_crop=(0.08, 1.0))
    out_a = aug(x, torch.Generator().manual_seed(1))
    out_b = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(out_a, out_b) and out_a.shape == x.shape
    out_a.sum().backward()
    assert x.grad.abs().sum() > 0  # differentiable: synthesis gradients reach the generator


# ------------------------------------------------------------------------------------------------
# Memory bank: cache "none" reads the same batches from the shards; equal per-process sample counts


def test_bank_without_cache_reads_the_same_batches(tmp_path):
    writers = [MemoryBank(tmp_path, rank=r, world_size=2) for r in (0, 1)]
    for i in range(3):  # unequal shard counts: rank 0 writes 3 shards, rank 1 one
        writers[0].write(torch.rand(5 + i, 3, 6, 6), torch.randint(1000, (5 + i,)), {"epoch": i})
    writers[1].write(torch.rand(4, 3, 6, 6), torch.randint(1000, (4,)), {"epoch": 0})
    views = {}
    for cache in ("device", "none"):
        views[cache] = [MemoryBank(tmp_path, rank=r, world_size=2, cache=cache) for r in (0, 1)]
        for bank in views[cache]:
            bank.refresh()
    for r in (0, 1):
        a = views["device"][r].sample(32, torch.Generator().manual_seed(r))
        b = views["none"][r].sample(32, torch.Generator().manual_seed(r))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        # every process draws the same number of samples from the union, whoever wrote more shards
        assert len(views["none"][r]) == 22 and a[0].shape[0] == 32


def test_memory_cache_choice(tmp_path, monkeypatch):
    from collections import namedtuple

    from nayer_scale.memory import cache_policy, choose_memory_cache, projected_bank_bytes

    cfg, cpu = get_preset("imagenet_r50"), torch.device("cpu")  # only the config, the device and the world size matter
    # a node with 512 GiB of available RAM and a /dev/shm of 256 GiB free, 8 processes
    monkeypatch.setattr(cache_policy.psutil, "virtual_memory", lambda: namedtuple("vm", "available")(512 * 2**30))
    monkeypatch.setattr(cache_policy.shutil, "disk_usage", lambda path: namedtuple("du", "free")(256 * 2**30))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    # the preset keeps the newest 300k images: 45 GB, one copy per node in shared memory
    assert projected_bank_bytes(cfg, 8) == 300_000 * 3 * 224 * 224
    assert choose_memory_cache(cfg, cpu, 8) == "node"
    # unbounded: 8 processes x 256 x (20 x 10 + 300 x 2) images, ~247 GB: read from the shards
    cfg.memory.max_images = 0
    assert projected_bank_bytes(cfg, 8) == 8 * 256 * 800 * 3 * 224 * 224
    assert choose_memory_cache(cfg, cpu, 8) == "none"
    cfg.memory.cache_gb = 1e4
    assert choose_memory_cache(cfg, cpu, 8) == "device"  # fits the cap (the device is the CPU here)
    cfg.memory.cache = "cpu"
    assert choose_memory_cache(cfg, cpu, 8) == "cpu"


def test_sample_grid_rows(tmp_path):
    """Up to 100 classes: a row per class (blank rows kept); ImageNet: rows only for the classes
    in the batch, so a 224 px grid of a 1000-class run is not 225,000 px tall."""
    from PIL import Image

    from nayer_scale.visualize import save_sample_grid

    images = torch.rand(6, 3, 8, 8)
    save_sample_grid(images, torch.tensor([0, 0, 2, 2, 2, 5]), 10, tmp_path / "a.png", per_class=2)
    assert Image.open(tmp_path / "a.png").size == (2 * 9 + 1, 10 * 9 + 1)
    save_sample_grid(images, torch.tensor([700, 3, 3, 512, 999, 700]), 1000, tmp_path / "b.png", per_class=2)
    assert Image.open(tmp_path / "b.png").size == (2 * 9 + 1, 4 * 9 + 1)
