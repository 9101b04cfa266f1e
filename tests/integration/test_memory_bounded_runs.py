"""Memory bank at scale: bounded size (FIFO / reservoir retirement against a direct simulation,
the manifest protocol under a kill, exact resume across retirement), damaged shards and manifests,
shard encodings, the prefetching sampler and the node-wide cache shared by 2 processes.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_memory_bounded.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import tiny_config
from helpers.memory import batch
from helpers.memory_bounded import _truncate, names
from nayer_scale.config import ConfigError
from nayer_scale.memory import MemoryBank, batch_seed, retention
from nayer_scale.memory.node_cache import NodeFiles
from nayer_scale.trainer import NayerTrainer


def test_cap_smaller_than_a_shard_is_refused_before_work(tmp_path, teacher_file, fake_test_split, lte_cache):
    with pytest.raises(ValueError, match="memory.max_images"):
        retention.admit([], 0, 30, 20, "fifo")
    cfg = tiny_config(tmp_path / "run", teacher_file, fake_test_split, lte_cache, "memory.max_images=10")
    with pytest.raises(ConfigError, match=r"memory.max_images=10 .* set memory.max_images >= 24"):
        NayerTrainer(cfg)
    assert not (tmp_path / "run" / "memory").exists()


def test_run_with_a_bounded_memory_resumes_exactly(crash_resume):
    def after_crash(cfg):  # killed in epoch 2, after its shard retired epoch 0's
        assert names(Path(cfg.run.run_dir) / "memory", "retired") == ["shard-r000-000000.tar"]

    run = crash_resume("memory.max_images=48", "run.epochs=4", after_crash=after_crash)  # bit-identical students
    assert run.summary["memory_size"] == run.straight_summary["memory_size"] == 48
    # shard 0 was deleted once the last checkpoint listing it was pruned; shard 1 is still listed by one
    memory = Path(run.config.run.run_dir) / "memory"
    assert sorted(p.name for p in memory.glob("*.tar")) == [
        "shard-r000-000001.tar",
        "shard-r000-000002.tar",
        "shard-r000-000003.tar",
    ]


def _node_worker(rank: int, root: str, shm: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NAYER_SHM_DIR=shm)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    node = MemoryBank(root, rank=rank, world_size=2, cache="node")
    node.write(*batch(6 + rank, 10 + rank, (3, 8, 8)))
    dist.barrier()
    node.refresh()
    own = MemoryBank(root, rank=rank, world_size=2, cache="cpu")  # the per-process cache
    own.refresh()
    seeds = [batch_seed(0, rank, 0, s) for s in range(5)]
    same = all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(node.batches(8, seeds), own.batches(8, seeds))
    )
    shm_dir = NodeFiles(root).dir  # the node's folder of this bank (NAYER_SHM_DIR=shm)
    files = sorted(p.name for p in shm_dir.glob("*.u8"))
    inodes = [os.stat(shm_dir / f).st_ino for f in files]
    Path(out, f"rank{rank}.json").write_text(
        json.dumps({"same": same, "files": files, "inodes": inodes, "len": len(node)})
    )
    dist.barrier()
    node.close(remove_node_cache=rank == 0)
    dist.destroy_process_group()


def test_node_cache_is_one_copy_shared_by_two_processes(tmp_path):
    port = 29500 + os.getpid() % 1000
    mp.spawn(_node_worker, args=(str(tmp_path / "bank"), str(tmp_path / "shm"), port, str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["same"] and r1["same"]  # batches identical to the per-process cache
    assert r0["len"] == r1["len"] == 13
    assert r0["files"] == r1["files"] and len(r0["files"]) == 2  # one file per shard for the node
    assert r0["inodes"] == r1["inodes"]
    assert not list((tmp_path / "shm").glob("nayer-scale-*/*.u8"))  # removed at the end


def test_resume_with_a_truncated_shard_warns_logs_and_continues(tmp_path, teacher_file, fake_test_split, lte_cache):
    """As a new user found it: truncate a listed shard of a stopped run and resume. Before, a raw
    ``tarfile.ReadError``; now the shard is named, dropped, logged in metrics.jsonl, and the run ends."""
    cfg = tiny_config(tmp_path / "run", teacher_file, fake_test_split, lte_cache, "run.epochs=2")
    NayerTrainer(cfg).fit()
    memory = Path(cfg.run.run_dir) / "memory"
    _truncate(memory / "shard-r000-000001.tar")
    cfg.run.resume, cfg.run.epochs = True, 3
    with pytest.warns(RuntimeWarning, match=r"shard-r000-000001.tar: \d+ bytes on disk, the manifest lists \d+"):
        summary = NayerTrainer(cfg).fit()
    assert summary["memory_size"] == 3 * 24 - 24  # the damaged shard's images are gone, the rest trained on
    lines = [json.loads(x) for x in open(Path(cfg.run.run_dir) / "metrics.jsonl")]
    assert lines[-1]["epoch"] == 2
    assert [(e["event"], e["file"]) for e in lines[-1]["memory_events"]] == [("damaged_shard", "shard-r000-000001.tar")]
