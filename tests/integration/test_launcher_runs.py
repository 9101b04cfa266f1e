"""accelerate launch's own flags: --mixed_precision decides under run.mixed_precision=auto, a
conflicting explicit value is refused naming both, --dynamo_backend turns run.compile on and is
recorded; and a compiled run after another run in the same process is still compiled (accelerate's
state is kept once per process).

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_launcher.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from conftest import tiny_cli_args, tiny_config


def test_compile_is_not_lost_to_an_earlier_accelerator_in_the_process(
    tmp_path, teacher_file, fake_test_split, lte_cache, one_thread
):
    from accelerate import Accelerator

    from nayer_scale.trainer import NayerTrainer

    Accelerator(cpu=True)  # accelerate's process-wide state now exists, without a dynamo backend
    cfg = tiny_config(
        tmp_path / "run", teacher_file, fake_test_split, lte_cache, "run.compile=true", "run.compile_backend=eager"
    )
    trainer = NayerTrainer(cfg)
    assert type(trainer.engine.model).__name__ == "OptimizedModule"
    assert type(trainer.engine.unwrapped).__name__ == "CifarResNet"


def _accelerate(tmp_path, teacher_file, fake_test_split, lte_cache, *flags: str, run: list[str] = ()):
    accelerate = shutil.which("accelerate")
    assert accelerate, "the accelerate command is part of the install"
    tiny = [*tiny_cli_args(teacher_file, fake_test_split, lte_cache, tmp_path / "run"), "run.epochs=2"]
    cmd = [
        accelerate,
        "launch",
        "--cpu",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        *flags,
        "-m",
        "nayer_scale",
        "distill",
        *tiny,
        *run,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_accelerate_launch_flags_reach_the_run_and_are_recorded(tmp_path, teacher_file, fake_test_split, lte_cache):
    refused = _accelerate(
        tmp_path / "a",
        teacher_file,
        fake_test_split,
        lte_cache,
        "--mixed_precision",
        "fp16",
        "--dynamo_backend",
        "no",
        run=["run.mixed_precision=bf16"],
    )
    assert refused.returncode != 0  # nayer-scale exits 2 with one line; accelerate's launcher then exits 1
    assert "error: run.mixed_precision=bf16 but accelerate launch --mixed_precision fp16" in refused.stderr
    assert not (tmp_path / "a" / "run" / "memory").exists()  # refused before any work
    ran = _accelerate(
        tmp_path / "b",
        teacher_file,
        fake_test_split,
        lte_cache,
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "eager",
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "precision bf16 from accelerate launch --mixed_precision" in ran.stdout
    recorded = json.loads((tmp_path / "b" / "run" / "config.json").read_text())
    run = recorded["config"]["run"] if "config" in recorded else recorded["run"]
    assert (run["mixed_precision"], run["compile"], run["compile_backend"]) == ("bf16", True, "eager")
