"""The start of a run once its components are built and any checkpoint resumed: the free-space
check, the trackers' run, the run record (config.json, run.yaml) and the start-up line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .disk_check import check_free_space, estimate_run_bytes
from .logger import write_run_record
from .summary import run_banner

if TYPE_CHECKING:
    from ..trainer import NayerTrainer
    from .components import Components

__all__ = ["announce_run"]


def announce_run(trainer: NayerTrainer, components: Components, changes: list[str]) -> None:
    """Everything ``NayerTrainer.__init__`` does after resuming. A collective: every process calls it.

    Prints a warning when the run's estimated bytes (an upper bound) exceed the free space of the
    run folder's disk, starts the trackers' run (resumed when ``trainer.start_epoch > 0``), writes
    the run record (``training.logger.write_run_record``, process 0) and prints ``run_banner``.

    Args:
        trainer: the run, set up and resumed.
        components: its components (``training.build_components``).
        changes: the allowed config changes since the resumed checkpoint (empty for a new run).

    Raises:
        OSError: the run record could not be written (``nayer_scale.storage.DiskFullError`` on a full disk).
    """
    t, acc = trainer, trainer.accelerator
    estimate = estimate_run_bytes(t.cfg, t.world_size, t.engine.unwrapped, t.synthesizer.state_dict())
    disk = check_free_space(t.run_dir, estimate)
    if disk:  # a warning: the estimate is an upper bound, and a full disk is survived anyway
        acc.print(disk)
    t.trackers.start(t.cfg.to_dict(), resumed=t.start_epoch > 0)
    write_run_record(
        t.run_dir,
        t.cfg,
        {"precision": t.precision.to_dict()},
        {"start_epoch": t.start_epoch, "world_size": t.world_size, "changed_since_checkpoint": changes},
        acc,
        t.lte,
        t.class_names,
    )
    acc.print(run_banner(t.cfg, components, t.world_size, t.device_kind, t.launched_with))
