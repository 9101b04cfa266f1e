"""The trainer's components, one job each (``nayer_scale.trainer.NayerTrainer`` orchestrates them).

- ``components``: builds them all from a config, in the order that fixes every random draw.
- ``student``: the student engine (model, SGD, cosine schedule, loss scaling, KD step; DDP or
  DeepSpeed ZeRO-2: every DeepSpeed detail lives there).
- ``checkpoint``: the checkpoint manager over the ``Stateful`` protocol (pickle-free, atomic).
- ``run_state``: what a checkpoint of a run holds; saving a position, resuming the latest one.
- ``progress``: the typed in-epoch position a mid-epoch checkpoint carries; the epoch bar.
- ``clock``: phase accounting and device-hours. ``preemption``: SIGTERM / SIGUSR1 -> safe points.
- ``rng``: the per-process random streams. ``logger``: metrics.jsonl / TensorBoard and the history.
- ``setup``: the Accelerator, CPU threads. ``launcher``: what ``accelerate launch`` asked for
  (mixed precision, dynamo backend), merged into the run's config.
- ``run_lock``: the run folder belongs to one job (a lease file with a heartbeat).
- ``trackers``: TensorBoard / W&B / trackio / MLflow through accelerate.
- ``start``: the start of a set-up run (free-space check, trackers, run record, start-up line);
  ``finish``: the end of a finished run (final top-1, held-out agreement, student files, summary.json).
- ``summary``: the start-up line, each epoch's sample grid, the student files, summary.json.
  ``disk_check``: what a run will write against the free space.
"""

from .checkpoint import CheckpointManager, Stateful, checkpoint_name
from .clock import RunClock
from .components import Components, build_components, check_class_names
from .launcher import LauncherSettings, apply_launcher_settings, launcher_settings
from .logger import MetricsLogger, to_numbers, write_run_record
from .preemption import Preempted, PreemptionGuard
from .progress import EpochProgress, bar_postfix, epoch_bar
from .rng import RNGStreams
from .setup import build_accelerator, set_cpu_threads
from .student import StudentEngine

__all__ = [
    "CheckpointManager",
    "Components",
    "EpochProgress",
    "LauncherSettings",
    "MetricsLogger",
    "Preempted",
    "PreemptionGuard",
    "RNGStreams",
    "RunClock",
    "Stateful",
    "StudentEngine",
    "apply_launcher_settings",
    "bar_postfix",
    "build_accelerator",
    "build_components",
    "check_class_names",
    "epoch_bar",
    "checkpoint_name",
    "launcher_settings",
    "set_cpu_threads",
    "to_numbers",
    "write_run_record",
]
