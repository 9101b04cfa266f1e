"""The end of a finished run: the student's final top-1, the held-out agreement, the student files
and ``summary.json``; then the memory bank's node cache is given back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..storage import atomic_write_json
from .summary import build_summary, save_student_files

if TYPE_CHECKING:
    from ..trainer import NayerTrainer

__all__ = ["finish_run"]


def finish_run(trainer: NayerTrainer, teacher_top1: float | None) -> dict:
    """Everything ``NayerTrainer.fit`` does after the last epoch's checkpoint. A collective: every
    process calls it.

    The student's top-1 is the last epoch's evaluation (a new evaluation when no epoch evaluated);
    the held-out agreement is ``NayerTrainer.heldout_agreement``. Process 0 writes
    ``student.safetensors`` (and ``student_quantized.safetensors``) and ``summary.json``.

    Args:
        trainer: the run, after its last epoch.
        teacher_top1: the teacher's top-1 on the real evaluation set (fraction in [0, 1]), or None.

    Returns:
        the summary (``training.summary.build_summary``).

    Raises:
        DiskFullError: the disk filled while writing a student file or the summary (the
            checkpoints are intact: ``run.resume=true`` finishes the run again).
    """
    t, acc = trainer, trainer.accelerator
    final = [r for r in t.logger.history if r.get("student_top1") is not None]
    with t.clock.phase("evaluation"):
        student_top1 = final[-1]["student_top1"] if final else t.evaluate(t.student)
        agreement = t.heldout_agreement()
    with t.clock.phase("checkpoint"):
        if acc.is_main_process:
            save_student_files(t.cfg, t.engine.unwrapped, t.run_dir, t.class_names)
        acc.wait_for_everyone()
    summary = build_summary(
        t.cfg,
        teacher_top1=teacher_top1,
        student_top1=student_top1,
        agreement=agreement,
        eval_images=t.eval_images,
        precision=t.precision,
        times=t.time_accounting(),
        world_size=t.world_size,
        device=t.device,
        device_kind=t.device_kind,
        memory_size=len(t.memory),
    )
    if acc.is_main_process:
        atomic_write_json(t.run_dir / "summary.json", summary)
    acc.wait_for_everyone()
    t.memory.close(remove_node_cache=acc.is_local_main_process)  # nobody samples any more
    return summary
