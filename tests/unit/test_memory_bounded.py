"""Memory bank at scale: bounded size (FIFO / reservoir retirement against a direct simulation,
the manifest protocol under a kill, exact resume across retirement), damaged shards and manifests,
shard encodings, the prefetching sampler and the node-wide cache shared by 2 processes.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_memory_bounded_runs.py."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.memory import batch
from helpers.memory_bounded import _truncate, names
from nayer_scale.memory import MemoryBank, batch_seed, retention


def all_batches(bank: MemoryBank, prefetch: int, n: int = 6, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(bank.batches(size, [batch_seed(3, 0, 1, s) for s in range(n)], prefetch))


# ------------------------------------------------------------------------------------------------
# Retention policies against direct simulations


def test_fifo_matches_a_queue_of_whole_shards():
    rng = np.random.default_rng(0)
    kept, queue, cap = [], collections.deque(), 50
    for t in range(200):
        n = int(rng.integers(1, 20))
        admitted, retire, _ = retention.admit(kept, t, n, cap, "fifo")
        assert admitted
        kept = [e for e in kept if e not in retire] + [{"index": t, "num_samples": n}]
        queue.append((t, n))
        while sum(m for _, m in queue) > cap:  # the simulation: drop the oldest until it fits
            queue.popleft()
        assert [e["index"] for e in kept] == [i for i, _ in queue]


def test_reservoir_is_algorithm_r_and_uniform_over_the_history():
    k, total, n = 5, 60, 10
    counts = np.zeros(total)
    for seed in range(300):
        kept, reservoir = [], [None] * k
        for t in range(total):
            admitted, retire, slot = retention.admit(kept, t, n, k * n, "reservoir", seed=seed, rank=1)
            if admitted:
                kept = [e for e in kept if e not in retire] + [{"index": t, "num_samples": n, "slot": slot}]
            # Algorithm R written out directly, with the same draws
            if t < k:
                reservoir[t] = t
            else:
                j = retention.reservoir_draw(seed, 1, t)
                if j < k:
                    reservoir[j] = t
        assert sorted(e["index"] for e in kept) == sorted(reservoir)
        counts[[e["index"] for e in kept]] += 1
    # every shard of the history is kept with probability k / total = 1/12 (300 runs: ~25 +- 5)
    assert counts.sum() == 300 * k and 8 <= counts.min() and counts.max() <= 45


# ------------------------------------------------------------------------------------------------
# Retirement in the manifest protocol


def test_retired_files_stay_until_no_checkpoint_lists_them(tmp_path):
    bank = MemoryBank(tmp_path, max_images=10)
    for i in range(3):
        bank.write(*batch(4, i), {"epoch": i})
    # 3 x 4 images > 10: the oldest retired, its file kept until released
    assert names(tmp_path) == ["shard-r000-000001.tar", "shard-r000-000002.tar"] and len(bank) == 8
    assert names(tmp_path, "retired") == ["shard-r000-000000.tar"] and (tmp_path / "shard-r000-000000.tar").exists()
    assert bank.release({"shard-r000-000000.tar"}) == []  # a kept checkpoint lists it
    assert bank.release(set()) == ["shard-r000-000000.tar"]
    assert not (tmp_path / "shard-r000-000000.tar").exists() and names(tmp_path, "retired") == []
    # another process drops the shards this one retired at its next refresh
    other = MemoryBank(tmp_path, rank=1, world_size=2)
    assert other.refresh() == 8
    bank.write(*batch(4, 3), {"epoch": 3})
    assert other.refresh() == 0 and other.num_shards == 2  # one in, one out
    assert [k for k in other.state_dict()["manifests"][0]] and len(other) == len(bank) == 8


def test_exact_resume_across_retirement(tmp_path):
    bank = MemoryBank(tmp_path, max_images=12)
    for i in range(3):
        bank.write(*batch(4, i), {"epoch": i})
    state = json.loads(json.dumps(bank.state_dict()))
    expected = all_batches(bank, prefetch=0)
    for i in range(3, 6):  # retires every shard of the snapshot
        bank.write(*batch(4, i), {"epoch": i})
    assert set(names(tmp_path, "retired")) >= {"shard-r000-000000.tar", "shard-r000-000001.tar"}
    resumed = MemoryBank(tmp_path, max_images=12)
    resumed.load_state_dict(state)
    assert names(tmp_path) == ["shard-r000-000000.tar", "shard-r000-000001.tar", "shard-r000-000002.tar"]
    assert not (tmp_path / "shard-r000-000003.tar").exists()  # written after the snapshot
    for (x, y), (ex, ey) in zip(all_batches(resumed, prefetch=2), expected):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    assert resumed.write(*batch(4, 3), {"epoch": 3}) == "shard-r000-000003.tar"
    assert names(tmp_path, "retired") == ["shard-r000-000000.tar"]


def test_kill_during_retirement_leaves_the_previous_manifest(tmp_path, monkeypatch):
    bank = MemoryBank(tmp_path, max_images=8)
    bank.write(*batch(4, 0)), bank.write(*batch(4, 1))
    before = (tmp_path / "manifest-r000.json").read_text()
    real_replace = os.replace

    def killed(src, dst):
        if os.path.basename(dst) == "manifest-r000.json":
            raise KeyboardInterrupt("killed while retiring")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        bank.write(*batch(4, 2))  # would retire shard 0
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / "manifest-r000.json").read_text() == before
    assert not (tmp_path / "shard-r000-000002.tar").exists()  # the new shard never stays unlisted
    assert len(bank) == 8 and names(tmp_path) == ["shard-r000-000000.tar", "shard-r000-000001.tar"]
    restarted = MemoryBank(tmp_path, max_images=8)
    assert restarted.refresh() == 8
    assert restarted.write(*batch(4, 2)) == "shard-r000-000002.tar"
    assert names(tmp_path, "retired") == ["shard-r000-000000.tar"]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (_truncate, "bytes on disk, the manifest lists"),
    "bit-flipped": (_flip, "SHA-256"),
    "deleted": (os.remove, "the file is missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_shard_on_resume_is_named_dropped_and_logged(tmp_path, damage):
    bank = MemoryBank(tmp_path)
    for i in range(3):
        bank.write(*batch(5, i))
    state = bank.state_dict()
    hurt, reason = DAMAGE[damage]
    hurt(tmp_path / "shard-r000-000001.tar")
    resumed = MemoryBank(tmp_path)
    with pytest.warns(RuntimeWarning, match=f"shard-r000-000001.tar: .*{reason}"):
        resumed.load_state_dict(state)
    assert len(resumed) == 10 and resumed.num_shards == 2
    events = resumed.pop_events()
    assert [(e["event"], e["file"]) for e in events] == [("damaged_shard", "shard-r000-000001.tar")]
    assert names(tmp_path) == ["shard-r000-000000.tar", "shard-r000-000002.tar"]
    assert resumed.write(*batch(5, 3)) == "shard-r000-000003.tar"  # numbering goes on


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("cache", ["cpu", "none"])
def test_damaged_shard_on_refresh_from_another_process(tmp_path, damage, cache):
    writer = MemoryBank(tmp_path, rank=0, world_size=2)
    writer.write(*batch(5, 0)), writer.write(*batch(5, 1))
    DAMAGE[damage][0](tmp_path / "shard-r000-000000.tar")
    reader = MemoryBank(tmp_path, rank=1, world_size=2, cache=cache)
    with pytest.warns(RuntimeWarning, match="shard-r000-000000.tar"):
        assert reader.refresh() == 5
    assert [e["file"] for e in reader.pop_events()] == ["shard-r000-000000.tar"]
    assert reader.refresh() == 0 and reader.pop_events() == []  # reported once, not retried
    x, y = reader.sample(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 4, 4)


def test_truncated_manifest_is_rebuilt_by_its_owner_and_survived_by_others(tmp_path):
    bank = MemoryBank(tmp_path, rank=0, world_size=2, encoding="png")
    for i in range(3):
        bank.write(*batch(5, i, (3, 4, 4)), {"epoch": i})
    other = MemoryBank(tmp_path, rank=1, world_size=2)
    assert other.refresh() == 15
    manifest = tmp_path / "manifest-r000.json"
    manifest.write_text(manifest.read_text()[:100])
    with pytest.warns(RuntimeWarning, match="manifest-r000.json"):
        assert other.refresh() == 0  # keeps what it has
    assert other.pop_events()[0]["event"] == "manifest_unreadable" and len(other) == 15
    _flip(tmp_path / "shard-r000-000002.tar")
    with pytest.warns(RuntimeWarning, match="rebuilt from the 2 shards of rank 0 that decode"):
        owner = MemoryBank(tmp_path, rank=0, world_size=2, encoding="png")
    assert names(tmp_path) == ["shard-r000-000000.tar", "shard-r000-000001.tar"]
    assert owner.refresh() == 10 and json.loads(manifest.read_text())["shards"][0]["shape"] == [3, 4, 4]
    assert torch.equal(owner.images_of(0, 1), other.images_of(0, 1))


# ------------------------------------------------------------------------------------------------
# Encodings, prefetching, caches


@pytest.mark.parametrize("encoding", ["raw", "png", "webp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_lossless_encodings_round_trip_exactly(tmp_path, encoding, channels):
    images = torch.randint(0, 256, (6, channels, 9, 7), dtype=torch.uint8)
    bank = MemoryBank(tmp_path, encoding=encoding)
    bank.write(images, torch.arange(6))
    reader = MemoryBank(tmp_path, rank=1, world_size=2)
    reader.refresh()
    assert torch.equal(reader.images_of(0, 0), images)
    none = MemoryBank(tmp_path, rank=1, world_size=2, cache="none")
    none.refresh()
    assert torch.equal(none.images_of(0, 0), images)


def test_lossy_storage_only_by_name(tmp_path):
    with pytest.raises(ValueError, match="asked for by name: memory.encoding=webp_lossy"):
        MemoryBank(tmp_path, encoding="webp", quality=80)
    with pytest.raises(ValueError, match="1- or 3-channel"):
        MemoryBank(tmp_path / "c2", encoding="png").write(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.arange(2))
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    lossy = MemoryBank(tmp_path / "lossy", encoding="webp_lossy", quality=50)
    lossy.write(images, torch.arange(4))
    reread = MemoryBank(tmp_path / "lossy", rank=1, world_size=2)
    reread.refresh()
    assert not torch.equal(reread.images_of(0, 0), images)  # lossy indeed
    assert torch.equal(lossy.images_of(0, 0), reread.images_of(0, 0))  # the writer caches what readers decode


@pytest.mark.parametrize("cache", ["device", "cpu", "node", "none"])
def test_prefetch_on_and_off_give_the_same_batches_in_every_cache(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("NAYER_SHM_DIR", str(tmp_path / "shm"))
    writer = MemoryBank(tmp_path / "bank")
    for i in range(4):
        writer.write(*batch(7 + i, i, (3, 5, 5)))
    reference = all_batches(writer, prefetch=0)
    bank = MemoryBank(tmp_path / "bank", rank=1, world_size=2, cache=cache)
    bank.refresh()
    for depth in (0, 3):
        for (x, y), (ex, ey) in zip(all_batches(bank, prefetch=depth), reference):
            assert torch.equal(x, ex) and torch.equal(y, ey)
    # the stored uint8 (dtype=None, what a GPU run's host side moves) are the same pixels
    seeds = [batch_seed(3, 0, 1, s) for s in range(len(reference))]
    for (x, _), (ex, _) in zip(bank.batches(16, seeds, 2, dtype=None), reference):
        assert x.dtype == torch.uint8 and torch.equal(x.float() / 255, ex)
    # the same draws as sample() with a generator seeded like the batch
    x, y = bank.sample(16, torch.Generator().manual_seed(batch_seed(3, 0, 1, 0)))
    assert torch.equal(x, reference[0][0]) and torch.equal(y, reference[0][1])
    # a consumer that stops early (a preemption) stops the thread
    it = bank.batches(4, range(100), prefetch=2)
    next(it)
    it.close()
