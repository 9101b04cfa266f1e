"""run.compile=true end to end on CPU (inductor), so that the compile path cannot rot: the student
and the teacher's KD forward are compiled, the adversarial forward and every saved state use the
plain module (no ``_orig_mod.`` keys), and a compiled run resumes without compile."""

from __future__ import annotations

from safetensors.torch import load_file

from conftest import tiny_config
from nayer_scale.trainer import NayerTrainer


def test_a_compiled_run_saves_plain_keys_and_resumes_without_compile(
    tmp_path, teacher_file, fake_test_split, lte_cache, one_thread
):
    cfg = tiny_config(tmp_path / "run", teacher_file, fake_test_split, lte_cache, "run.compile=true", "run.epochs=2")
    trainer = NayerTrainer(cfg)
    assert type(trainer.engine.model).__name__ == "OptimizedModule"  # the student engine compiled the prepared student
    assert type(trainer.engine.teacher_kd).__name__ == "OptimizedModule"
    assert type(trainer.engine.unwrapped).__name__ == "CifarResNet"  # the adversarial forward and the saves: eager
    summary = trainer.fit()
    assert summary["student_top1"] is not None
    student = load_file(tmp_path / "run" / "student.safetensors")
    assert not any(k.startswith("_orig_mod.") for k in student) and "fc.weight" in student
    # run.compile may change between sessions: the checkpoint loads into an eager student
    more = tiny_config(
        tmp_path / "run",
        teacher_file,
        fake_test_split,
        lte_cache,
        "run.compile=false",
        "run.epochs=3",
        "run.resume=true",
    )
    assert NayerTrainer(more).fit()["epochs"] == 3
