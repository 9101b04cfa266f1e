"""Publishing a run as hub artifacts (``python -m nayer_scale.export RUN --format hf OUT``): the memory
bank as a ``datasets`` dataset with a dataset card, the student as a model folder (nayer-scale's, or
timm's for a student with timm's keys) with a model card. The cards are read back with
``huggingface_hub``'s ``ModelCard.load`` / ``DatasetCard.load``; the dataset with ``load_from_disk``; the
student through the project's own ``teacher.arch=hf:<folder>``. Offline: random weights, tmp folders,
the one upload mocked. The real timm / torchvision loading of a timm-format student is in
``tests/unit/test_vision_teachers.py`` (the vision environment).

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_export.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")  # declared in the "hf" extra (part of "dev")


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path_factory, monkeypatch):
    """Arrow caches of the datasets builders go to a temporary folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


# ---------------------------------------------------------------------------------------------
# Bounded memory: the bank is never held whole

_MEASURE = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path

    def anon_kib():  # resident anonymous memory: what the process holds, not file pages it maps
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])

    import datasets, torch
    datasets.config.HF_DATASETS_CACHE = sys.argv[2]
    from nayer_scale.export import export_memory_dataset

    torch.set_num_threads(1)
    root = Path(sys.argv[1])
    export_memory_dataset(root / "small", root / "out-small")  # warm-up: lazy imports, arrow's memory pool
    peak, done = [anon_kib()], threading.Event()
    base = peak[0]

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], anon_kib())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    export_memory_dataset(root / "big", root / "out-big")
    done.set()
    thread.join()
    print(json.dumps({"growth_mib": (max(peak[0], anon_kib()) - base) / 1024}))
""")


def _blocky_bank(run: Path, shards: int, per_shard: int, side: int) -> int:
    """A 3-channel run with a bank of ``shards`` x ``per_shard`` images of ``side`` px, flat 4 x 4 colour
    blocks (a few hundred PNG bytes each, so that what datasets writes stays small beside the decoded
    bank). Returns the decoded size in bytes."""
    from nayer_scale.memory import MemoryBank
    from nayer_scale.recipes import get_preset
    from nayer_scale.storage import atomic_write_json

    cfg = get_preset("cifar10")
    cfg.run.run_dir, cfg.teacher.image_size = str(run), side
    run.mkdir(parents=True)
    atomic_write_json(run / "config.json", {**cfg.to_dict(), "resolved": {}, "sessions": []})
    gen = torch.Generator().manual_seed(0)
    bank = MemoryBank(run / "memory", rank=0, world_size=1, cache="none")
    for batch in range(shards):
        blocks = torch.randint(0, 256, (per_shard, 3, 4, 4), generator=gen, dtype=torch.uint8)
        images = blocks.repeat_interleave(side // 4, 2).repeat_interleave(side // 4, 3).contiguous()
        bank.write(images, torch.randint(0, 10, (per_shard,), generator=gen), {"epoch": batch})
    bank.close()
    return shards * per_shard * 3 * side * side


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RssAnon from /proc (Linux)")
def test_export_memory_stays_far_below_the_decoded_bank(tmp_path):
    """The old export (``Dataset.from_list(list(rows()))``) grew by 219 MiB here, more than the bank's
    192 MiB decoded; the generator export by ~40 MiB: one shard decoded (12 MiB) and datasets' batches."""
    _blocky_bank(tmp_path / "small", 1, 16, 128)
    decoded = _blocky_bank(tmp_path / "big", 16, 256, 128)  # 4096 images of 128 px: 192 MiB decoded
    env = {**os.environ, "PYTHONPATH": f"{ROOT / '.pathdir'}:{ROOT}", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth_mib"] * 2**20
    assert growth < decoded / 3, f"export grew by {growth / 2**20:.0f} MiB for a {decoded / 2**20:.0f} MiB bank"
    ds = datasets.load_from_disk(str(tmp_path / "out-big"))["train"]
    assert len(ds) == 4096
    from nayer_scale.memory import MemoryBank

    bank = MemoryBank(tmp_path / "big" / "memory", rank=1, world_size=2, cache="none")
    bank.refresh()
    assert ds["label"] == bank.labels.tolist()
    for i in (0, 2047, 4095):  # (rank 0, shard i // 256, image i % 256), stored as (H, W, C)
        expected = bank.images_of(0, i // 256)[i % 256].permute(1, 2, 0).numpy()
        assert np.array_equal(np.array(ds[i]["image"]), expected)
    bank.close()
