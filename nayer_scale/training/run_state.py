"""What a checkpoint of a NAYER run holds, and how a run continues from one.

A checkpoint (``CheckpointManager``: atomic, pickle-free) stores two groups of ``Stateful``
components, restored in this order:

- shared, written once by process 0: the student engine (weights, optimizer, schedule, loss
  scale), the metrics history and the run clock;
- each process's own: its optimizer partition (DeepSpeed ZeRO-2), the synthesizer (generator and
  noisy layer), the BN-statistics momentum, its memory-bank manifests and its random streams.

A checkpoint is taken at the end of an epoch or, on SIGTERM / SIGUSR1, at a mid-epoch safe point
whose position (``EpochProgress``) it carries; resuming from it continues bit-identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import NayerConfig
from ..memory import SHARD_PATTERN
from .checkpoint import checkpoint_name
from .components import Components
from .progress import EpochProgress

__all__ = ["ResumePoint", "RunState"]


@dataclass
class ResumePoint:
    """Where a run continues: the next epoch, the in-epoch position (None: from the epoch's start)
    and the allowed config changes since the checkpoint (``config.resume``)."""

    start_epoch: int = 0
    progress: EpochProgress | None = None
    changes: list[str] = field(default_factory=list)


class RunState:
    """The checkpointed state of a run: saving a position, and resuming the latest one.

    Args:
        config: the run's validated NayerConfig (stored in every checkpoint's meta.json, and
            compared on resume).
        components: the run's components (``build_components``).
    """

    def __init__(self, config: NayerConfig, components: Components) -> None:
        self.cfg, self.c = config, components

    def stateful(self) -> tuple[dict, dict]:
        """(shared, per-process) components of a checkpoint, in loading order."""
        c = self.c
        shared = {"student": c.engine, "history": c.logger, "clock": c.clock}
        process = {
            "optimizer_partition": c.engine.process_part,
            "synthesizer": c.synthesizer,
            "bn_momentum": c.hooks,
            "memory": c.memory,
            "rng": c.rngs,
        }
        return shared, process

    def save(self, epoch: int, position: EpochProgress | None = None) -> Path:
        """Checkpoint the end of ``epoch`` or, with ``position``, a mid-epoch safe point; then
        release the memory-bank shards that no kept checkpoint lists any more. A collective: every
        process calls it. Returns the checkpoint folder.

        Raises:
            DiskFullError: the disk filled while writing (the previous checkpoint is intact).
        """
        state = position.state_dict() if position is not None else None
        meta = {"epoch": epoch, "position": state, "config": self.cfg.to_dict()}
        path = self.c.checkpoints.save(checkpoint_name(epoch, state), meta, *self.stateful())
        # retired shards go once no kept checkpoint lists them (after the pruning of old checkpoints)
        self.c.memory.release(self.c.checkpoints.referenced(SHARD_PATTERN))
        return path

    def resume(self, device) -> ResumePoint:
        """Load the latest checkpoint into the components (or start over when the run stopped
        before its first: its shards are dropped), and print where the run continues.

        Args:
            device: where the in-epoch running sums live (the run's device).

        Raises:
            ConfigError: a changed config field that may not change between sessions (named with
                both values), another number of processes or strategy, an unreadable checkpoint.
        """
        c, run = self.c, self.cfg.run
        found = c.checkpoints.resume(self.cfg.to_dict(), *self.stateful())
        if found is None:  # stopped before its first checkpoint: its shards are dropped
            c.memory.load_state_dict({"manifests": {}})
            return ResumePoint()
        path, meta, changes = found
        post_warmup = max(1, run.epochs - run.warmup_epochs)
        if post_warmup != c.engine.scheduler.T_max:  # run.epochs extended: the schedule spans the new length
            c.engine.extend_schedule(post_warmup)
        position = meta["position"]
        point = ResumePoint(
            start_epoch=meta["epoch"] + (0 if position else 1),
            progress=EpochProgress.from_state(position, device) if position else None,
            changes=changes,
        )
        where = (
            f" at synthesis batch {position['synthesis_batches']}, student step {position['distill_steps']}"
            if position
            else ""
        )
        c.accelerator.print(
            f"resumed from {path} (next epoch {point.start_epoch}{where})"
            + (f"; changed since: {', '.join(changes)}" if changes else "")
        )
        return point
