"""run.log_with: TensorBoard and trackio (both local, offline) get the per-epoch records, the KD loss
every run.log_every_steps steps and the sample grid; a resumed run continues the same tracker run.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_trackers.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import tiny_cli_args

pytest.importorskip("tensorboard")  # both are in the dev extra: the import audit names them
pytest.importorskip("trackio")


def _run(run_dir, teacher_file, fake_test_split, lte_cache, trackio_dir, epochs: int, resume: bool):
    args = [
        *tiny_cli_args(teacher_file, fake_test_split, lte_cache, run_dir),
        "distill.steps_per_epoch=4",
        "run.mixed_precision=no",
        f"run.epochs={epochs}",
        f"run.resume={resume}",
        "run.log_with=tensorboard,trackio",
        "run.log_every_steps=2",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TRACKIO_DIR=str(trackio_dir))
    done = subprocess.run(
        [sys.executable, "-m", "nayer_scale", "distill", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_tensorboard_and_trackio_get_the_run_and_a_resume_continues_it(
    tmp_path, teacher_file, fake_test_split, lte_cache
):
    run_dir, trackio_dir = tmp_path / "run", tmp_path / "trackio"
    _run(run_dir, teacher_file, fake_test_split, lte_cache, trackio_dir, epochs=2, resume=False)
    name = json.loads((run_dir / "trackers.json").read_text())["trackio_name"]
    _run(run_dir, teacher_file, fake_test_split, lte_cache, trackio_dir, epochs=3, resume=True)
    assert json.loads((run_dir / "trackers.json").read_text())["trackio_name"] == name  # the same tracker run

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard" / "nayer-scale"), size_guidance={"images": 0}).Reload()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kd = [(e.step, e.value) for e in events.Scalars("epoch/kd")]
    expected = [((r["epoch"] + 1) * 4, r["kd"]) for r in metrics if r.get("kd") is not None]
    assert [s for s, _ in kd] == [s for s, _ in expected]
    assert [v for _, v in kd] == pytest.approx([v for _, v in expected], rel=1e-6)
    # the KD loss every 2 of the 4 steps of each post-warm-up epoch (1 and 2), on one step axis
    assert [e.step for e in events.Scalars("train/kd_loss")] == [6, 8, 10, 12]
    assert [e.step for e in events.Images("samples")] == [0, 4, 8]

    env = dict(os.environ, TRACKIO_DIR=str(trackio_dir))
    code = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
        f"print(json.dumps(S.get_logs('nayer-scale', {name!r}), default=str))"
    )
    logs = json.loads(
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    )
    top1 = [row["epoch/student_top1"] for row in logs if row.get("epoch/student_top1") is not None]
    assert len(top1) >= 2, logs  # both sessions reached the same trackio run
    assert top1 == pytest.approx([r["student_top1"] for r in metrics if r.get("student_top1") is not None])
