"""ImageNet scale on CPU: the real entry point launch/imagenet_r50.py with its smoke preset, one and
two processes (DDP over gloo), rotating class slices, the 224 px generator and augmentation, the
memory bank read from its shards, SIGUSR1 to one process and SIGKILL of a whole run mid-epoch.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_imagenet_scale.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest
from safetensors.torch import load_file

from conftest import assert_bit_identical
from nayer_scale.recipes import get_preset
from nayer_scale.storage import load_state

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "launch" / "imagenet_r50.py"
# Longer epochs than the preset's so that a signal lands inside one; the eval set is added by the
# fixture ``val_shards``.
# tv_resnet18 student: the same distributed code path (DDP / ZeRO-2 buckets, BN buffers, checkpoints)
# at under half the time of ResNet-50's 25M parameters through gloo every step (53 s vs 92 s a run)
# a checkpoint of 2 processes: pickle-free state (safetensors + JSON) and its meta.json
CHECKPOINT_FILES = {"meta.json"} | {
    f"{part}.{ext}" for part in ("shared", "process-000", "process-001") for ext in ("json", "safetensors")
}
LONG = [
    "run.epochs=4",
    "distill.steps_per_epoch=12",
    "run.cpu_threads=1",
    "eval.every_epochs=100",
    "eval.num_workers=0",
    "student.arch=tv_resnet18",
]
# The DeepSpeed run: one epoch and half the steps fewer (its three launches were the suite's slowest
# test); the stop still lands inside a distillation epoch before the last.
DEEPSPEED = [*LONG, "run.epochs=3", "distill.steps_per_epoch=6"]


def _write_images(n: int, size: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(buf, format="PNG")
        yield i, buf.getvalue()


@pytest.fixture(scope="module")
def val_shards(tmp_path_factory) -> Path:
    """3 webdataset val shards of 40 random 36x40 images with labels in [0, 1000): uneven per process."""
    import webdataset as wds

    folder = tmp_path_factory.mktemp("val-wds")
    for shard in range(3):
        with wds.TarWriter(str(folder / f"val-{shard:06d}.tar")) as sink:
            for i, png in _write_images(40 // 3 + (shard == 0), 36, shard):
                sink.write({"__key__": f"s{shard}-{i:04d}", "png": png, "cls": str((7 * i + shard) % 1000).encode()})
    return folder


@pytest.fixture(scope="module")
def long_args(val_shards) -> list[str]:
    return [*LONG, "eval.dataset=imagenet", f"eval.root={val_shards}", "eval.resize=36"]


# ------------------------------------------------------------------------------------------------
# The real entry point


def _env():
    return dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")


def _launch(
    run_dir: Path, processes: int, port: int, extra: list[str] = (), deepspeed: bool = False, slurm_recipe: bool = False
) -> subprocess.Popen:
    accelerate = shutil.which("accelerate")
    assert accelerate, "the accelerate command is part of the install"
    if processes == 1:
        head = ["--cpu", "--num_processes", "1"]
    elif deepspeed:
        head = ["--use_deepspeed", "--zero_stage", "2", "--num_processes", str(processes)]
    else:
        head = ["--multi_gpu", "--num_processes", str(processes)]
    cmd = [
        accelerate,
        "launch",
        *head,
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        str(ENTRY),
        "preset=imagenet_r50_smoke",
        f"run.run_dir={run_dir}",
        "run.mixed_precision=no",
        *extra,
    ]
    env = _env()
    if deepspeed:  # ACCELERATE_USE_CPU would turn the DeepSpeed launch into plain multi-CPU DDP
        env.pop("ACCELERATE_USE_CPU")
    if slurm_recipe:  # as launch/slurm/imagenet_r50.sbatch starts it on every node
        cmd = ["bash", "-c", "trap '' USR1; exec " + " ".join(cmd)]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _shard_records(run_dir: Path) -> list[tuple[int, int, int]]:
    """(rank, epoch, synthesis batch) of every shard listed in the manifests."""
    records = []
    for manifest in sorted((run_dir / "memory").glob("manifest-r*.json")):
        for entry in json.loads(manifest.read_text())["shards"]:
            meta = entry["metadata"]
            records.append((meta["rank"], meta["epoch"], meta["batch"]))
    return records


def _expected_records(cfg, processes: int) -> list[tuple[int, int, int]]:
    s, run = cfg.synthesis, cfg.run
    return sorted(
        (r, e, b)
        for r in range(processes)
        for e in range(run.epochs)
        for b in range(s.warmup_batches_per_epoch if e < run.warmup_epochs else s.batches_per_epoch)
    )


def _shard_labels(run_dir: Path) -> Counter:
    counts: Counter = Counter()
    for shard in (run_dir / "memory").glob("*.tar"):
        with tarfile.open(shard) as tar:
            counts.update(int(tar.extractfile(m).read()) for m in tar if m.name.endswith(".cls"))
    return counts


def _assert_same_student(run_a: Path, run_b: Path):
    a, b = load_file(run_a / "student.safetensors"), load_file(run_b / "student.safetensors")
    assert a.keys() == b.keys()
    assert_bit_identical(b, a)


def test_smoke_preset_through_the_entry_point(tmp_path):
    run_dir = tmp_path / "smoke"
    out = _finish(_launch(run_dir, 1, 29531))
    assert "memory-bank cache: none" in out and "held-out synthetic images" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = get_preset("imagenet_r50_smoke")
    # no eval set (the data-free default): teacher-student agreement on held-out synthetic images
    assert summary["teacher_top1"] is None and 0 <= summary["student_agreement"] <= 1
    assert sorted(_shard_records(run_dir)) == _expected_records(cfg, 1)
    # 5 synthesis batches of 16 = 80 images: classes 0..79, each once (rotating slices of 1000)
    assert _shard_labels(run_dir) == Counter(range(80))
    student = load_file(run_dir / "student.safetensors")
    assert "layer4.2.conv3.weight" in student and student["fc.weight"].shape == (1000, 2048)  # torchvision keys
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2] and "adversarial_agreement" in lines[-1]


def test_smoke_preset_evaluates_on_an_imagenet_folder(tmp_path):
    """ImageNet val as an ImageFolder (one folder per class, 1000 classes), resize + centre crop."""
    val = tmp_path / "val"
    for cls, png in _write_images(1000, 30, 0):
        (val / f"n{cls:08d}").mkdir(parents=True)
        (val / f"n{cls:08d}" / "img.png").write_bytes(png)
    run_dir = tmp_path / "smoke"
    _finish(
        _launch(
            run_dir,
            1,
            29530,
            [
                "eval.dataset=imagenet",
                f"eval.root={val}",
                "eval.every_epochs=100",
                "eval.num_workers=0",
                "run.epochs=2",
            ],
        )
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval_images"] == 1000 and 0 <= summary["teacher_top1"] <= 1 and 0 <= summary["student_top1"] <= 1
    # a folder whose class count does not fit the teacher is refused before anything runs
    (val / "extra").mkdir()
    (val / "extra" / "img.png").write_bytes(next(_write_images(1, 30, 1))[1])
    proc = _launch(tmp_path / "refused", 1, 29529, ["eval.dataset=imagenet", f"eval.root={val}"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "1001" in out and not (tmp_path / "refused" / "memory").exists()


@pytest.fixture(scope="module")
def straight_ddp(tmp_path_factory, long_args):
    """An uninterrupted 2-process run of the smoke preset with longer epochs."""
    run_dir = tmp_path_factory.mktemp("ddp") / "straight"
    _finish(_launch(run_dir, 2, 29532, long_args))
    return run_dir


def test_two_processes_split_classes_and_train_on_the_union(straight_ddp):
    summary = json.loads((straight_ddp / "summary.json").read_text())
    cfg = get_preset("imagenet_r50_smoke")
    cfg.run.epochs = 4
    assert summary["num_processes"] == 2
    assert sorted(_shard_records(straight_ddp)) == _expected_records(cfg, 2)
    # 2 processes x (1 + 3 x 2) batches x 16 images = 224 slots of classes 0..223, each exactly once
    assert _shard_labels(straight_ddp) == Counter(range(224))
    assert summary["memory_size"] == 224  # both processes sampled from the union
    # 3 val shards over 2 processes (2 and 1): every one of the 40 images evaluated exactly once
    assert summary["eval_images"] == 40 and summary["student_top1"] is not None


def _workers(proc: subprocess.Popen) -> dict[int, psutil.Process]:
    found = {}
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            rank = child.environ().get("RANK")
        except psutil.Error:
            continue
        if rank is not None and "imagenet_r50.py" in " ".join(child.cmdline()):
            found[int(rank)] = child
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and its workers (each worker runs in a session of its own)."""
    processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in processes:
        p.kill()
    psutil.wait_procs(processes, timeout=60)
    proc.communicate(timeout=60)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 300):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the test could interrupt it"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def _latest(run_dir: Path) -> str | None:
    pointer = run_dir / "checkpoints" / "latest"
    return pointer.read_text() if pointer.is_file() else None


def test_sigusr1_to_one_process_checkpoints_all_and_resumes_exactly(tmp_path, straight_ddp, long_args):
    run_dir = tmp_path / "preempted"
    proc = _launch(run_dir, 2, 29533, long_args)
    _wait_for(lambda: any(e >= 2 for _, e, _ in _shard_records(run_dir)), proc)
    workers = _workers(proc)
    assert set(workers) == {0, 1}
    workers[1].send_signal(signal.SIGUSR1)  # only rank 1 is told; rank 0 must stop with it
    out = _finish(proc)
    assert "stop requested" in out and not (run_dir / "summary.json").exists()
    name = _latest(run_dir)
    ckpt = run_dir / "checkpoints" / name
    assert {p.name for p in ckpt.iterdir()} == CHECKPOINT_FILES
    state = json.loads((ckpt / "meta.json").read_text())
    # the signal came once epoch 2 had shards: the stop is at a safe point of epoch 2 or 3 (a mid-
    # epoch position, or an epoch end with position None), never the end of the run
    assert 2 <= state["epoch"] <= 3 and (state["position"] is not None or state["epoch"] < 3)
    _finish(_launch(run_dir, 2, 29534, long_args))  # the same command continues the run
    _assert_same_student(run_dir, straight_ddp)
    assert sorted(_shard_records(run_dir)) == sorted(_shard_records(straight_ddp))


def test_sigkill_mid_epoch_loses_and_duplicates_no_shard(tmp_path, straight_ddp, long_args):
    run_dir = tmp_path / "killed"
    proc = _launch(run_dir, 2, 29535, long_args)
    # kill once epoch 2 has shards on disk but its checkpoint does not exist yet
    _wait_for(lambda: _latest(run_dir) == "epoch-0001" and any(e == 2 for _, e, _ in _shard_records(run_dir)), proc)
    _kill_tree(proc)
    uncovered = [r for r in _shard_records(run_dir) if r[1] >= 2]
    assert uncovered, "shards written after the last checkpoint"
    _finish(_launch(run_dir, 2, 29536, long_args))
    records = _shard_records(run_dir)
    assert len(records) == len(set(records))  # nothing duplicated
    assert sorted(records) == sorted(_shard_records(straight_ddp))  # nothing lost
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["memory_size"] == 224
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2, 3]
    _assert_same_student(run_dir, straight_ddp)


def test_sigusr1_to_every_process_under_the_slurm_recipe(tmp_path):
    """The job script's time-limit trap signals the workers by name (``pkill -USR1 -f``); both
    checkpoint at their next safe point, and the launcher, started under ``trap '' USR1``, exits 0."""
    run_dir = tmp_path / "slurm"
    proc = _launch(run_dir, 2, 29537, LONG, slurm_recipe=True)
    _wait_for(lambda: any(e >= 1 for _, e, _ in _shard_records(run_dir)), proc)
    # what the job script's USR1 trap runs on every node, narrowed to this test's run
    subprocess.run(
        ["pkill", "-USR1", "-f", "--", f"-u {ENTRY} preset=imagenet_r50_smoke run.run_dir={run_dir} "], check=True
    )
    out = _finish(proc)
    assert "stop requested (signal 10)" in out and not (run_dir / "summary.json").exists()
    ckpt = run_dir / "checkpoints" / _latest(run_dir)
    assert {p.name for p in ckpt.iterdir()} == CHECKPOINT_FILES


def test_deepspeed_zero2_run_resumes_exactly(tmp_path):
    """The student under DeepSpeed ZeRO-2 (2 processes, gloo): the same run as DDP's shape, each
    process checkpoints its own optimizer partition, and a stopped run resumes bit-identically."""
    straight = tmp_path / "ds-straight"
    out = _finish(_launch(straight, 2, 29538, DEEPSPEED, deepspeed=True))
    assert "student DeepSpeed ZeRO-2" in out
    summary = json.loads((straight / "summary.json").read_text())
    # (1 warm-up + 2 x 2 synthesis batches) x 16 images x 2 processes
    assert summary["num_processes"] == 2 and summary["memory_size"] == 160
    ckpt = straight / "checkpoints" / _latest(straight)
    states = [load_state(ckpt / f"process-00{r}")["optimizer_partition"] for r in (0, 1)]
    assert all(s for s in states)  # each process holds its own ZeRO partition
    assert load_state(ckpt / "shared")["student"]["optimizer"] is None

    stopped = tmp_path / "ds-stopped"
    proc = _launch(stopped, 2, 29539, DEEPSPEED, deepspeed=True)
    _wait_for(lambda: any(e >= 1 for _, e, _ in _shard_records(stopped)), proc)
    _workers(proc)[0].send_signal(signal.SIGUSR1)
    assert "stop requested" in _finish(proc) and not (stopped / "summary.json").exists()
    _finish(_launch(stopped, 2, 29540, DEEPSPEED, deepspeed=True))
    _assert_same_student(stopped, straight)


def test_throughput_benchmark_smoke(tmp_path):
    """python -m benchmarks.imagenet_throughput --smoke: each condition in its own process, CSV + markdown."""
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.imagenet_throughput",
            "--smoke",
            "--conditions",
            "bf16",
            "fp32",
            "--synthesis-batches",
            "1",
            "--student-steps",
            "2",
            "--results-dir",
            str(tmp_path),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import csv

    rows = list(csv.DictReader((tmp_path / "imagenet_throughput.csv").open()))
    assert [r["condition"] for r in rows] == ["bf16", "fp32"]
    for r in rows:
        assert float(r["synthesis_images_per_s"]) > 0 and float(r["student_images_per_s"]) > 0
        assert float(r["projected_gpu_hours_8"]) == pytest.approx(8 * float(r["projected_hours_per_process"]), rel=0.02)
    assert "| bf16 | tv_resnet50 |" in (tmp_path / "imagenet_throughput.md").read_text()
