"""Memory bank: round trip, atomic shard writing, several ranks on one root, exact resume."""

from __future__ import annotations

import json
import os
import re
import tarfile

import pytest
import torch

from helpers.memory import batch
from nayer_scale.memory import MemoryBank


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_round_trip_rounding_labels_metadata_and_manifest(tmp_path):
    k = torch.arange(256, dtype=torch.float32)
    # just below / above the half-way point between two uint8 levels, and both ends
    values = torch.cat([(k[:255] + 0.49) / 255, (k[:255] + 0.51) / 255, torch.tensor([0.0, 1.0])])
    expected = torch.cat([k[:255], k[:255] + 1, torch.tensor([0.0, 255.0])]).to(torch.uint8)
    images = values.reshape(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    labels = torch.arange(len(values)) % 10
    bank = MemoryBank(tmp_path, rank=0)
    name = bank.write(images, labels, {"epoch": 3, "batch": 1, "rank": 0})
    assert name == "shard-r000-000000.tar"
    assert re.fullmatch(r"shard-r\d{3}-\d{6}\.tar", bank.write(*batch(5, 1, (3, 2, 2)), {"epoch": 4})) is not None

    manifest = json.loads((tmp_path / "manifest-r000.json").read_text())
    assert manifest["format"] == 2 and manifest["rank"] == 0 and manifest["next_index"] == 2
    assert [(e["name"], e["num_samples"], e["epoch"]) for e in manifest["shards"]] == [
        ("shard-r000-000000.tar", len(values), 3),
        ("shard-r000-000001.tar", 5, 4),
    ]

    with tarfile.open(tmp_path / name) as tar:
        names = tar.getnames()
        assert sorted(names[:3]) == ["000-000000-000000.cls", "000-000000-000000.img.npy", "000-000000-000000.json"]
        assert len(names) == 3 * len(values)
        assert json.loads(tar.extractfile("000-000000-000007.json").read()) == {
            "epoch": 3,
            "batch": 1,
            "rank": 0,
            "image_shape": [3, 2, 2],
        }

    # a fresh bank (another process) reads the shards back from disk
    reader = MemoryBank(tmp_path, rank=1, world_size=2)
    assert reader.refresh() == len(values) + 5 and len(reader) == len(values) + 5 and reader.num_shards == 2
    assert torch.equal(reader.images_of(0, 0)[:, 0, 0, 0], expected)
    assert torch.equal(reader.labels[: len(values)], labels)
    assert torch.equal(reader.images_of(0, 0), bank.images_of(0, 0))

    x, y = reader.sample(64, gen())
    assert x.shape == (64, 3, 2, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert reader.sample(8, gen(), dtype=torch.float64)[0].dtype == torch.float64
    # half-precision inputs are quantised in float32
    half = MemoryBank(tmp_path / "half")
    half.write(torch.tensor([0.0, 1.0, 0.5]).reshape(3, 1, 1, 1).to(torch.bfloat16), torch.tensor([0, 1, 2]))
    assert half.images_of(0, 0).flatten().tolist() == [0, 255, 128]
    # the uint8 path stores exactly what it is given
    u = (torch.arange(48) * 5).to(torch.uint8).reshape(1, 3, 4, 4)
    bank2 = MemoryBank(tmp_path / "u8")
    bank2.write(u, torch.tensor([7]))
    x, y = bank2.sample(2)
    assert torch.equal((x * 255).round().to(torch.uint8), u.expand(2, -1, -1, -1)) and y.tolist() == [7, 7]


def test_crash_leftovers_are_never_read_and_cleaned_at_start(tmp_path, monkeypatch):
    bank = MemoryBank(tmp_path, rank=0)
    bank.write(*batch(6, 0), {"epoch": 0})

    real_replace = os.replace

    def failing_replace(src, dst):
        if os.path.basename(src).startswith("shard-") and str(src).endswith(".tmp"):  # shard-*.tar.<pid>.<rand>.tmp
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        bank.write(*batch(4, 1), {"epoch": 1})
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(bank) == 6 and bank.num_shards == 1
    manifest = json.loads((tmp_path / "manifest-r000.json").read_text())
    assert [e["name"] for e in manifest["shards"]] == ["shard-r000-000000.tar"]

    # leftovers of a hard crash: a half-written shard, a half-written manifest, an unlisted shard
    (tmp_path / "shard-r000-000001.tar.tmp").write_bytes(b"partial tar")
    (tmp_path / "manifest-r000.json.tmp").write_text('{"form')
    (tmp_path / "shard-r000-000005.tar").write_bytes(b"complete but never listed")
    (tmp_path / "shard-r001-000000.tar.tmp").write_bytes(b"another rank's, still being written")
    reader = MemoryBank(tmp_path, rank=1, world_size=2)  # cleans only its own leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest-r000.json",
        "manifest-r000.json.tmp",
        "shard-r000-000000.tar",
        "shard-r000-000001.tar.tmp",
        "shard-r000-000005.tar",
    ]
    assert reader.refresh() == 6 and reader.num_shards == 1  # nothing unlisted is opened

    restarted = MemoryBank(tmp_path, rank=0)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["manifest-r000.json", "shard-r000-000000.tar"]
    assert restarted.refresh() == 6
    assert restarted.write(*batch(4, 1), {"epoch": 1}) == "shard-r000-000001.tar"  # numbering continues
    assert len(restarted) == 10


def test_two_ranks_see_the_union_once(tmp_path):
    r0 = MemoryBank(tmp_path, rank=0, world_size=2)
    r1 = MemoryBank(tmp_path, rank=1, world_size=2)
    for epoch in range(2):
        r0.write(*batch(5, 10 + epoch), {"epoch": epoch, "rank": 0})
        r1.write(*batch(3, 20 + epoch), {"epoch": epoch, "rank": 1})
        assert r0.refresh() == 3 and r1.refresh() == 5  # only the other rank's new shard
        assert r0.refresh() == 0 and r1.refresh() == 0
    assert len(r0) == len(r1) == 16 and r0.num_shards == r1.num_shards == 4
    assert sorted(os.listdir(tmp_path)) == [
        "manifest-r000.json",
        "manifest-r001.json",
        "shard-r000-000000.tar",
        "shard-r000-000001.tar",
        "shard-r001-000000.tar",
        "shard-r001-000001.tar",
    ]
    # same content, same logical order although the shards were loaded in different orders
    for seed in range(3):
        x0, y0 = r0.sample(32, gen(seed))
        x1, y1 = r1.sample(32, gen(seed))
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    # every sample is present exactly once: compare multisets of labels with what was written
    written = torch.cat([batch(5, 10)[1], batch(3, 20)[1], batch(5, 11)[1], batch(3, 21)[1]])
    assert sorted(r1.labels.tolist()) == sorted(written.tolist())
    assert r0.state_dict() == r1.state_dict() and set(r1.state_dict()["manifests"]) == {0, 1}


def test_exact_resume_discards_later_shards(tmp_path):
    bank = MemoryBank(tmp_path, rank=0)
    bank.write(*batch(7, 0), {"epoch": 0})
    bank.write(*batch(5, 1), {"epoch": 1})
    state = json.loads(json.dumps(bank.state_dict()))  # survives a JSON round trip too (string keys)
    expected = bank.sample(16, gen(42))
    bank.write(*batch(9, 2), {"epoch": 2})
    assert (tmp_path / "shard-r000-000002.tar").exists()

    resumed = MemoryBank(tmp_path, rank=0)
    resumed.load_state_dict(state)
    assert not (tmp_path / "shard-r000-000002.tar").exists()
    manifest = json.loads((tmp_path / "manifest-r000.json").read_text())
    assert [e["name"] for e in manifest["shards"]] == ["shard-r000-000000.tar", "shard-r000-000001.tar"]
    assert len(resumed) == 12 and resumed.num_shards == 2
    x, y = resumed.sample(16, gen(42))
    assert torch.equal(x, expected[0]) and torch.equal(y, expected[1])
    assert resumed.write(*batch(9, 2), {"epoch": 2}) == "shard-r000-000002.tar"


def test_resume_with_two_ranks_restores_order(tmp_path):
    r0, r1 = MemoryBank(tmp_path, 0, 2), MemoryBank(tmp_path, 1, 2)
    for epoch in range(2):
        r1.write(*batch(4, 30 + epoch), {"epoch": epoch})
        r0.write(*batch(6, 40 + epoch), {"epoch": epoch})
        r0.refresh(), r1.refresh()
    states = {0: r0.state_dict(), 1: r1.state_dict()}
    expected = r1.sample(20, gen(7))
    r0.write(*batch(3, 50), {"epoch": 2})
    r1.write(*batch(3, 51), {"epoch": 2})
    new0, new1 = MemoryBank(tmp_path, 0, 2), MemoryBank(tmp_path, 1, 2)
    new0.load_state_dict(states[0])
    new1.load_state_dict(states[1])
    assert len(new0) == len(new1) == 20 and len(os.listdir(tmp_path)) == 6
    x, y = new1.sample(20, gen(7))
    assert torch.equal(x, expected[0]) and torch.equal(y, expected[1])


def test_missing_shard_in_state_is_named_dropped_and_the_rest_kept(tmp_path):
    bank = MemoryBank(tmp_path)
    bank.write(*batch(3, 0))
    bank.write(*batch(3, 1))
    state = bank.state_dict()
    os.remove(tmp_path / "shard-r000-000000.tar")
    resumed = MemoryBank(tmp_path)
    with pytest.warns(RuntimeWarning, match=r"shard-r000-000000.tar: the file is missing"):
        resumed.load_state_dict(state)
    assert (tmp_path / "shard-r000-000001.tar").exists() and len(resumed) == 3
    assert [e["event"] for e in resumed.pop_events()] == ["damaged_shard"]
    assert [e["name"] for e in json.loads((tmp_path / "manifest-r000.json").read_text())["shards"]] == [
        "shard-r000-000001.tar"
    ]


def test_empty_bank_and_bad_inputs(tmp_path):
    bank = MemoryBank(tmp_path)
    with pytest.raises(RuntimeError, match="empty"):
        bank.sample(4)
    images, labels = batch(4, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bank.write(images * 2, labels)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bank.write(images - 0.5, labels)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bank.write(torch.full_like(images, float("nan")), labels)
    with pytest.raises(ValueError, match="labels"):
        bank.write(images, labels[:3])
    with pytest.raises(ValueError):
        bank.write(images[0], labels)
    with pytest.raises(ValueError, match="integer"):
        bank.write(images, labels.float())
    with pytest.raises(ValueError, match="uint8"):
        bank.write((images * 255).int(), labels)
    with pytest.raises(ValueError, match="rank"):
        MemoryBank(tmp_path, rank=2, world_size=2)
    assert len(bank) == 0 and not list(tmp_path.glob("*.tar")) and not list(tmp_path.glob("*.tmp"))
    bank.write(images, labels)
    with pytest.raises(ValueError, match="shape"):
        bank.write(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))
    assert len(bank) == 4 and bank.num_shards == 1
