"""Multi-node, proven on one machine: two "nodes" of one process each on localhost (gloo), started
the way real nodes are (accelerate's --num_machines / --machine_rank / --main_process_ip), each with
its own HOME (node-local caches) and a shared run folder; then the SLURM job script
launch/slurm/imagenet_r50.sbatch under stub ``srun`` / ``scontrol`` commands that start its launch
line once per "node" locally, including the time-limit signal, its forwarding and the requeue.

What this does not prove: two real hosts (network interfaces, NCCL, a shared file system's
semantics, clock skew); see docs/scale-out.md, "Multi-node".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from conftest import assert_bit_identical
from nayer_scale.storage import load_state

ROOT = Path(__file__).resolve().parents[2]
NODES = 2
EPOCHS = 3
CHECKPOINT_FILES = {"meta.json"} | {
    f"{part}.{ext}" for part in ("shared", "process-000", "process-001") for ext in ("json", "safetensors")
}


def _overrides(run_dir: Path, teacher: Path, eval_root: Path) -> list[str]:
    """The fashion_mnist preset shrunk to seconds (as tests/conftest.py's tiny_config), with global
    BN statistics; every node gets the same list (node-local paths come from HOME)."""
    return [
        "preset=fashion_mnist",
        f"run.run_dir={run_dir}",
        "teacher.arch=resnet8",
        f"teacher.weights={teacher}",
        "student.arch=resnet8",
        f"eval.root={eval_root}",
        "eval.every_epochs=100",
        "synthesis.batch_size=24",
        "synthesis.num_generator_steps=2",
        "synthesis.batches_per_epoch=2",
        "synthesis.warmup_batches_per_epoch=1",
        "synthesis.generator_width=8",
        "synthesis.noise_dim=32",
        "distill.batch_size=16",
        "distill.steps_per_epoch=4",
        "run.warmup_epochs=1",
        "run.mixed_precision=no",
        "run.cpu_threads=1",
        f"run.epochs={EPOCHS}",
        "run.progress=false",
        "run.resume=true",
        "run.safe_point_every_steps=1",
        "lte.encoder=hashed",
        "synthesis.bn_stats_scope=global",
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NAYER_KERNELS")}
    home.mkdir(parents=True, exist_ok=True)
    return dict(
        env, HOME=str(home), ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1"
    )


def _launch_nodes(tmp: Path, run_dir: Path, teacher: Path, eval_root: Path) -> list[subprocess.Popen]:
    """One ``accelerate launch`` per node, as on real nodes: only --machine_rank differs."""
    accelerate = shutil.which("accelerate")
    assert accelerate, "the accelerate command is part of the install"
    port = _free_port()
    procs = []
    for rank in range(NODES):
        cmd = [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_machines",
            str(NODES),
            "--num_processes",
            str(NODES),
            "--machine_rank",
            str(rank),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(port),
            "--rdzv_backend",
            "static",
            "--same_network",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(ROOT / "launch" / "distill.py"),
            *_overrides(run_dir, teacher, eval_root),
        ]
        procs.append(
            subprocess.Popen(
                cmd,
                env=_env(tmp / f"node{rank}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out[-4000:]
        outs.append(out)
    return outs


def _shard_records(run_dir: Path) -> list[tuple[int, int, int]]:
    records = []
    for manifest in sorted((run_dir / "memory").glob("manifest-r*.json")):
        for entry in json.loads(manifest.read_text())["shards"]:
            meta = entry["metadata"]
            records.append((meta["rank"], meta["epoch"], meta["batch"]))
    return sorted(records)


def _wait_for(condition, procs, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert all(p.poll() is None for p in procs), "a node ended before the test could signal it"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def _worker(launcher: subprocess.Popen) -> psutil.Process:
    """The training process (it has RANK in its environment) under one node's launcher."""
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if "RANK" in child.environ() and "launch/" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise AssertionError("no training process found under the launcher")


def _assert_global_bn_momentum(ckpt: Path) -> None:
    """bn_stats_scope=global: the per-process BN-momentum EMA is the same on both nodes."""
    parts = [load_state(ckpt / f"process-00{r}")["bn_momentum"]["ema"] for r in range(NODES)]
    flat = [[t for pair in part for t in pair] for part in parts]
    assert flat[0] and all(t is not None for t in flat[0])
    for a, b in zip(*flat):
        assert (a - b).abs().max().item() <= 1e-5 * (1 + a.abs().max().item())


@pytest.fixture(scope="module")
def straight(tmp_path_factory, teacher_file, fake_test_split) -> Path:
    """An uninterrupted two-node run."""
    tmp = tmp_path_factory.mktemp("straight")
    run_dir = tmp / "run"
    _finish(_launch_nodes(tmp, run_dir, teacher_file, fake_test_split))
    return run_dir


def test_two_nodes_on_localhost_signal_one_node_and_resume_exactly(tmp_path, straight, teacher_file, fake_test_split):
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["num_processes"] == NODES
    records = _shard_records(straight)
    assert {r for r, _, _ in records} == {0, 1}  # shards from both nodes in the shared run folder
    assert len(records) == NODES * (1 + 2 * (EPOCHS - 1))
    ckpt = straight / "checkpoints" / (straight / "checkpoints" / "latest").read_text()
    assert {p.name for p in ckpt.iterdir()} == CHECKPOINT_FILES  # one checkpoint part per node
    _assert_global_bn_momentum(ckpt)

    run_dir = tmp_path / "run"
    procs = _launch_nodes(tmp_path, run_dir, teacher_file, fake_test_split)
    _wait_for(lambda: {(r, e) for r, e, _ in _shard_records(run_dir)} >= {(0, 1), (1, 1)}, procs)
    _worker(procs[1]).send_signal(signal.SIGUSR1)  # only node 1 is told; node 0 must stop with it
    outs = _finish(procs)
    assert "stop requested" in outs[0]  # rank 0 (node 0, never signalled) stopped with node 1
    assert not (run_dir / "summary.json").exists()
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text()
    assert {p.name for p in ckpt.iterdir()} == CHECKPOINT_FILES
    # node-local caches: each node built the label-text embeddings in its own HOME
    for rank in range(NODES):
        assert list((tmp_path / f"node{rank}" / ".cache" / "nayer-scale" / "lte").glob("*.safetensors"))

    _finish(_launch_nodes(tmp_path, run_dir, teacher_file, fake_test_split))  # the same commands resume
    assert _shard_records(run_dir) == records
    assert_bit_identical(load_file(run_dir / "student.safetensors"), load_file(straight / "student.safetensors"))
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(EPOCHS))


# ------------------------------------------------------------------------------------------------
# The SLURM job script under stub srun / scontrol

SRUN = r"""#!/bin/bash
# stub srun: run the command once per node ($SLURM_NNODES), locally, with SLURM_NODEID set and a
# node-local HOME; exit with the first non-zero status (as --kill-on-bad-exit would report it).
while [[ "$1" == --* ]]; do shift; done
echo "srun $*" >> "$STUB_LOG"
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  mkdir -p "$STUB_NODES/node$node"
  SLURM_NODEID=$node HOME="$STUB_NODES/node$node" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""

SCONTROL = r"""#!/bin/bash
# stub scontrol: "show hostnames" gives localhost for every node; "requeue" is recorded.
echo "scontrol $*" >> "$STUB_LOG"
case "$1 $2" in
  "show hostnames") for ((i = 0; i < SLURM_NNODES; i++)); do echo 127.0.0.1; done ;;
  "requeue "*) echo "$2" >> "$STUB_REQUEUED" ;;
  *) echo "stub scontrol: unsupported: $*" >&2; exit 1 ;;
esac
"""

CPU_CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 2
num_processes: 2
machine_rank: 0
main_process_ip: 127.0.0.1
main_process_port: 29500
rdzv_backend: static
same_network: true
mixed_precision: 'no'
dynamo_config: {}
use_cpu: true
"""


def _sbatch(tmp: Path, args: list[str]) -> subprocess.Popen:
    stubs = tmp / "bin"
    stubs.mkdir(exist_ok=True)
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (stubs / name).write_text(text)
        (stubs / name).chmod((stubs / name).stat().st_mode | stat.S_IEXEC)
    (tmp / "cpu.yaml").write_text(CPU_CONFIG)
    env = _env(tmp / "submit")
    env.update(
        PATH=f"{stubs}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        SLURM_NNODES=str(NODES),
        SLURM_GPUS_ON_NODE="1",
        SLURM_JOB_NODELIST="node[0-1]",
        SLURM_JOB_ID="4242",
        MASTER_PORT=str(_free_port()),
        ACCELERATE_CONFIG=str(tmp / "cpu.yaml"),
        STUB_LOG=str(tmp / "stub.log"),
        STUB_REQUEUED=str(tmp / "requeued"),
        STUB_NODES=str(tmp / "nodes"),
    )
    return subprocess.Popen(
        ["bash", str(ROOT / "launch" / "slurm" / "imagenet_r50.sbatch"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_slurm_job_script_under_stub_srun_time_limit_forward_requeue(tmp_path, teacher_file, fake_test_split):
    run_dir = tmp_path / "run"
    args = _overrides(run_dir, teacher_file, fake_test_split)
    job = _sbatch(tmp_path, args)
    _wait_for(lambda: {(r, e) for r, e, _ in _shard_records(run_dir)} >= {(0, 1), (1, 1)}, [job])
    job.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@600 does near the time limit
    out, _ = job.communicate(timeout=300)
    assert job.returncode == 0, out[-4000:]
    assert "time limit near" in out and "requeueing job 4242" in out
    assert (tmp_path / "requeued").read_text().split() == ["4242"]
    log = (tmp_path / "stub.log").read_text()
    assert "pkill -USR1 -f -- -u launch/imagenet_r50.py" in log  # the forwarding, through srun
    assert "--machine_rank $SLURM_NODEID" in log and "trap '' USR1" in log  # expanded by each node's task
    assert not (run_dir / "summary.json").exists()
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text()
    assert {p.name for p in ckpt.iterdir()} == CHECKPOINT_FILES
    for node in range(NODES):  # node-local HOMEs from the stub srun: each node built its own cache
        assert list((tmp_path / "nodes" / f"node{node}" / ".cache" / "nayer-scale" / "lte").glob("*.safetensors"))

    # The requeued job runs the same script, which resumes: that resume is the one the test above
    # proves exact (left out here to keep the test short).
