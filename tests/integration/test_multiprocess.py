"""Two processes through `accelerate launch` on CPU (gloo DDP): each writes its own memory-bank
shards, both train on the union, and the student's weights stay identical across processes."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import torch

from conftest import assert_bit_identical
from nayer_scale.storage import load_state


def test_two_process_run(tmp_path, teacher_file, fake_test_split, lte_cache):
    accelerate = shutil.which("accelerate")
    assert accelerate, "the accelerate command is part of the install"
    run_dir = tmp_path / "ddp"
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        str(Path(__file__).parents[1] / "ddp_worker.py"),
        str(run_dir),
        str(teacher_file),
        str(fake_test_split),
        str(lte_cache),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    shards = sorted(p.name for p in (run_dir / "memory").glob("*.tar"))
    assert sum("r000" in s for s in shards) == 3 and sum("r001" in s for s in shards) == 3, shards
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_processes"] == 2
    assert summary["memory_size"] == 2 * 3 * 24  # every process trained on the union of both banks
    a = torch.load(run_dir / "student-process-0.pt")
    b = torch.load(run_dir / "student-process-1.pt")
    assert_bit_identical(b, a)
    # the processes synthesised different images (own RNG streams)
    assert not torch.equal(
        *[
            load_state(run_dir / "checkpoints" / "epoch-0002" / f"process-00{r}")["synthesizer"]["noisy_layer"][
                "weight"
            ]
            for r in (0, 1)
        ]
    )
