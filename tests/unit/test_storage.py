"""nayer_scale.storage: atomic writes and the pickle-free state files (exact round trips, no code run)."""

from __future__ import annotations

import enum
import json
import math
import pickle
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nayer_scale import storage
from nayer_scale.storage import atomic_write_bytes, atomic_write_json, atomic_write_text, load_state, save_state


class Stage(int, enum.Enum):  # like DeepSpeed's ZeroStageEnum
    disabled = 0
    gradients = 2


def _assert_same(a, b, where="state"):
    """Exact equality: same container types, key types, tensor dtypes / shapes / values, nan == nan."""
    assert type(a) is type(b) or (isinstance(a, dict) and type(b) is dict), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b) and [type(k) for k in a] == [type(k) for k in b], where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def _round_trip(tmp_path: Path, state, name="state"):
    save_state(tmp_path / name, state)
    return load_state(tmp_path / name)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def _step(net: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    loss = net(torch.randn(8, 4, generator=g)).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
        lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99)),
    ],
)
def test_optimizer_state_round_trip_and_next_step(tmp_path, make_opt):
    net = _net()
    opt = make_opt(net.parameters())
    for seed in range(3):
        _step(net, opt, seed)
    state = {"optimizer": opt.state_dict(), "model": net.state_dict()}
    restored = _round_trip(tmp_path, state)
    _assert_same(state, restored)
    assert all(type(k) is int for k in restored["optimizer"]["state"])
    twin = _net()
    twin.load_state_dict(restored["model"])
    twin_opt = make_opt(twin.parameters())
    twin_opt.load_state_dict(restored["optimizer"])
    _step(net, opt, 7)
    _step(twin, twin_opt, 7)
    for a, b in zip(net.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)


def test_scheduler_and_grad_scaler_states(tmp_path):
    opt = torch.optim.SGD(_net().parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(3):
        opt.step()
        sched.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "empty": {},
        "empty_list": [],
        "empty_tuple": (),
    }
    assert state["scaler"] == {}
    restored = _round_trip(tmp_path, state)
    _assert_same(state, restored)
    twin_opt = torch.optim.SGD(_net().parameters(), lr=0.1)
    twin = torch.optim.lr_scheduler.CosineAnnealingLR(twin_opt, T_max=10)
    twin_opt.load_state_dict(restored["optimizer"])  # the cosine schedule is recursive in the lr
    twin.load_state_dict(restored["scheduler"])
    opt.step(), sched.step(), twin_opt.step(), twin.step()
    assert sched.get_last_lr() == twin.get_last_lr()


def test_rng_states_restore_the_same_draws(tmp_path):
    gen = torch.Generator().manual_seed(5)
    torch.rand(3, generator=gen)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = {
        "torch": torch.get_rng_state(),
        "generator": gen.get_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    expected = (torch.rand(5), torch.rand(5, generator=gen), np.random.rand(5), [random.random() for _ in range(5)])
    restored = _round_trip(tmp_path, state)
    _assert_same(state, restored)
    assert restored["numpy"][1].dtype == np.uint32 and restored["torch"].dtype == torch.uint8
    torch.set_rng_state(restored["torch"])
    gen.set_state(restored["generator"])
    np.random.set_state(restored["numpy"])
    random.setstate(restored["python"])
    again = (torch.rand(5), torch.rand(5, generator=gen), np.random.rand(5), [random.random() for _ in range(5)])
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert np.array_equal(expected[2], again[2]) and expected[3] == again[3]


def test_plain_values_keys_containers_and_tensors(tmp_path):
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    state = {
        "int_keys": {0: "a", 5: [1, 2]},
        "mixed_keys": {1: 1, "1": 2, (2, 3): 3, None: 4},
        "tuple": (1, (2.5, None), [3, (4,)]),
        "list": [1, [2, 3]],
        "floats": [float("inf"), float("-inf"), float("nan"), -0.0, 1e-310, 0.1],
        "scalars": [True, False, None, 2**70, -3, "text/with/slashes"],
        "numpy_scalars": [np.int64(7), np.float64(0.25), np.float32(0.5), np.bool_(True)],
        "enum": Stage.gradients,
        "tensors": {
            "zero_dim": torch.tensor(3.5),
            "uint8": torch.arange(7, dtype=torch.uint8),
            "bf16": torch.randn(3, dtype=torch.bfloat16),
            "bool": torch.tensor([True, False]),
            "empty": torch.empty(0, 3),
            "view": base[:, 1],
            "same_storage": base,
            "again": base,
            "strided": base.t(),
        },
        "arrays": [np.arange(5, dtype=np.int16), np.zeros((2, 0)), np.float32(1.0) * np.ones((2, 2))],
        "tag_like_keys": {"__tuple__": 1},
        "a/b": torch.ones(1),
        "a": {"b": torch.zeros(1)},
        "ordered": OrderedDict(w=torch.ones(2)),
    }
    restored = _round_trip(tmp_path, state)
    expected = dict(state, numpy_scalars=[7, 0.25, 0.5, True], enum=2)
    _assert_same(expected, restored)
    assert type(restored["enum"]) is int and type(restored["numpy_scalars"][0]) is int
    assert type(restored["numpy_scalars"][3]) is bool
    assert restored["tensors"]["zero_dim"].shape == () and restored["tensors"]["strided"].shape == (4, 3)
    # tensors live in the safetensors file under their path; the JSON holds no numbers of them
    from safetensors import safe_open

    with safe_open(str(tmp_path / "state.safetensors"), framework="pt") as f:
        assert "tensors/uint8" in f.keys() and "arrays/0" in f.keys()


def test_load_state_maps_tensors_to_device(tmp_path):
    save_state(tmp_path / "s", {"t": torch.ones(2)})
    assert load_state(tmp_path / "s", device="meta")["t"].device.type == "meta"


@pytest.mark.parametrize(
    "value, where",
    [
        ({"optimizer": {"loss_scaler": object()}}, "optimizer/loss_scaler: type object"),
        ({"fn": lambda: 0}, "fn: type function"),
        ([1, {2: {1, 2}}], "1/2: type set"),
        ({"size": torch.Size([2])}, "size: type Size"),
        ({"a": np.array(["x"])}, "a: numpy array"),
    ],
)
def test_unsupported_types_raise_naming_the_path(tmp_path, value, where):
    with pytest.raises(TypeError, match=f"cannot store {where}"):
        save_state(tmp_path / "s", value)
    assert list(tmp_path.iterdir()) == []


def test_missing_or_mismatched_files(tmp_path):
    save_state(tmp_path / "s", {"t": torch.ones(2), "n": 1})
    first = (tmp_path / "s.json").read_text()
    save_state(tmp_path / "s", {"t": torch.ones(2), "n": 2})
    (tmp_path / "s.json").write_text(first)  # a save interrupted between its two files
    with pytest.raises(ValueError, match="different save_state"):
        load_state(tmp_path / "s")
    save_state(tmp_path / "s", {"t": torch.ones(2)})
    doc = json.loads((tmp_path / "s.json").read_text())
    doc["state"]["t"]["__tensor__"] = "missing/key"
    (tmp_path / "s.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="missing/key"):
        load_state(tmp_path / "s")
    (tmp_path / "s.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="s.safetensors"):
        load_state(tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="other.json"):
        load_state(tmp_path / "other")


class _Plant:
    """A pickle that, when unpickled, creates a marker file (what an attacker's payload would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_pickles_are_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Plant(marker))
    save_state(tmp_path / "process-000", {"t": torch.ones(2)})
    (tmp_path / "process-000.pt").write_bytes(payload)  # a checkpoint-like pickle next to the state
    assert torch.equal(load_state(tmp_path / "process-000")["t"], torch.ones(2))  # ignored
    (tmp_path / "process-000.json").write_bytes(payload)
    with pytest.raises(ValueError, match="JSON"):
        load_state(tmp_path / "process-000")
    save_state(tmp_path / "shared", {"t": torch.ones(2)})
    (tmp_path / "shared.safetensors").write_bytes(payload)
    with pytest.raises(ValueError, match="safetensors"):
        load_state(tmp_path / "shared")
    assert not marker.exists()


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "t.txt", "héllo")
    atomic_write_json(tmp_path / "j.json", {"x": [1, float("inf")]})
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert json.loads((tmp_path / "j.json").read_text()) == {"x": [1, float("inf")]}
    save_state(tmp_path / "s", {"t": torch.ones(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "j.json", "s.json", "s.safetensors", "t.txt"]


def test_failed_writes_keep_the_previous_content(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_text(path, "new")
    with pytest.raises(OSError, match="disk gone"):
        save_state(tmp_path / "s", {"t": torch.ones(1)})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "no" / "such" / "folder", b"")
