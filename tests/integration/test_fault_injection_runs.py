"""A full disk, or a kill, in the middle of any writer of a run: the run stops with one line naming
the file, every output left is complete (and verifies) or absent, and running the same command again
finishes the run with a student bit-identical to an uninterrupted run's.

The faults (tests/fault_worker.py) cut a write half way: half of its bytes are on disk, then
``OSError(ENOSPC)`` (nayer_scale.storage turns it into DiskFullError, which ``nayer-scale distill``
reports as one line) or SIGKILL. The runs are ``nayer-scale distill`` commands (``cli.main``).

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_fault_injection.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fault_worker import inject_fault
from safetensors.torch import load_file

from conftest import assert_bit_identical, tiny_config, tiny_run_overrides
from helpers.fault_injection import assert_complete_or_absent
from nayer_scale.cli import main
from nayer_scale.trainer import NayerTrainer

WORKER = Path(__file__).parents[1] / "fault_worker.py"
# the smallest tiny run: 3 epochs (1 warm-up) of one synthesis batch of 8 and one student step, the
# student evaluated at the end only; the same command twice continues the run (the preset's run.resume=true)
RUN = (
    "synthesis.batch_size=8",
    "synthesis.num_generator_steps=1",
    "synthesis.noise_dim=16",
    "distill.batch_size=8",
    "distill.steps_per_epoch=1",
    "eval.every_epochs=2",
    "run.resume=true",
)

# writer: (path written, fnmatch; which matching write fails; the name the one-line error gives). The
# faults of the training loop are in its last epoch (2): the resume continues a trained student.
# A run writes: manifest (empty), config.json, run.yaml, lte_neighbours.json; then per epoch e: shard e,
# manifest, samples/epoch-e.png, a metrics.jsonl line, checkpoint epoch-e (process-000 and shared
# state pairs, meta.json) and its pointer latest; then student.safetensors and summary.json.
WRITERS = {
    "memory shard": ("*/memory/shard-r000-000002.tar.*.tmp", 1, "shard-r000-000002.tar"),
    "manifest": ("*/memory/manifest-r000.json.*.tmp", 4, "manifest-r000.json"),  # the one listing shard 2
    "checkpoint": ("*/checkpoints/epoch-0002.tmp/shared.json.*.tmp", 1, "shared.json"),
    "checkpoint pointer": ("*/checkpoints/latest.*.tmp", 3, "latest"),
    "metrics.jsonl": ("*/metrics.jsonl", 3, "metrics.jsonl"),
    "sample grid": ("*/samples/epoch-0002.png.*.tmp", 1, "epoch-0002.png"),
    "LTE cache": ("*/lte-fresh/lte-*.safetensors.*.tmp", 1, ".safetensors"),
    "config.json": ("*/config.json.*.tmp", 1, "config.json"),
    "summary.json": ("*/summary.json.*.tmp", 1, "summary.json"),
    "student export": ("*/student.safetensors.*.tmp", 1, "student.safetensors"),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, teacher_file, fake_test_split, lte_cache):
    """The exported student of the uninterrupted run, shared by every case."""
    cfg = tiny_config(tmp_path_factory.mktemp("straight") / "run", teacher_file, fake_test_split, lte_cache, *RUN)
    NayerTrainer(cfg).fit()
    return load_file(Path(cfg.run.run_dir) / "student.safetensors")


@pytest.fixture
def command(tmp_path, teacher_file, fake_test_split, lte_cache):
    """``writer`` -> (the ``nayer-scale distill`` arguments of the run, its run folder, its LTE cache)."""

    def make(writer: str):
        lte = tmp_path / "lte-fresh" if writer == "LTE cache" else lte_cache  # a fresh cache: the pool is written
        return tiny_run_overrides(tmp_path / "run", teacher_file, fake_test_split, lte, *RUN), tmp_path / "run", lte

    return make


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_in_any_writer_stops_the_run_and_the_same_command_resumes_it_exactly(
    writer, reference, command, monkeypatch, capsys
):
    pattern, nth, named = WRITERS[writer]
    args, run_dir, lte = command(writer)
    seen = inject_fault(monkeypatch, pattern, nth, "enospc")
    with pytest.raises(SystemExit) as stop:
        main(argv=["distill", *args])
    monkeypatch.undo()
    assert stop.value.code == 2 and seen["n"] == nth
    error = capsys.readouterr().err.strip().splitlines()[-1]  # one line: DiskFullError's, naming the file
    assert error.startswith("error: no space left on device while writing ") and named in error, error
    assert_complete_or_absent(run_dir, lte, temporary_files=False)

    main(argv=["distill", *args])  # the same command again
    assert_bit_identical(load_file(run_dir / "student.safetensors"), reference)
    assert_complete_or_absent(run_dir, lte, temporary_files=False)


@pytest.mark.parametrize("writer", ["memory shard", "checkpoint"])
def test_a_kill_in_the_middle_of_a_write_leaves_complete_files_and_resumes_exactly(writer, reference, command):
    pattern, nth, _ = WRITERS[writer]
    args, run_dir, lte = command(writer)
    killed = subprocess.run(
        [sys.executable, str(WORKER), pattern, str(nth), *args], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert list(run_dir.rglob("*.tmp")), "the kill came in the middle of a write: its temporary file is left"
    assert_complete_or_absent(run_dir, lte, temporary_files=True)

    with pytest.warns(RuntimeWarning, match="taking over the lock of a job that is gone"):
        main(argv=["distill", *args])  # the same command again
    assert_bit_identical(load_file(run_dir / "student.safetensors"), reference)
    assert_complete_or_absent(run_dir, lte, temporary_files=False)  # the resumed run removed them
