"""One metrics logger: per-epoch records to ``metrics.jsonl`` (and the trackers), the run's history,
and the record of what the run is (``config.json`` with one entry per session, ``run.yaml``).

Records may hold device tensors; they are read to the host together, once per record.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch
from accelerate import Accelerator

from ..metrics import lte_nearest_classes
from ..storage import append_line, atomic_write_json, atomic_write_text
from .trackers import Trackers, global_step

__all__ = ["MetricsLogger", "to_numbers", "write_run_record"]


def to_numbers(record: dict) -> dict:
    """``record`` with every tensor value replaced by a Python number, in one host read."""
    keys = [k for k, v in record.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return dict(record)
    values = torch.stack([record[k].detach().double().reshape(()) for k in keys]).tolist()
    return {**record, **dict(zip(keys, values))}


class MetricsLogger:
    """Keeps the run's per-epoch records (``history``, Stateful) and writes them on process 0.

    Args:
        run_dir: the run folder (``metrics.jsonl`` goes there).
        accelerator: process identity.
        trackers: the run's experiment trackers (``run.log_with``); an epoch's record is logged at
            the trackers' step of its end (``trackers.global_step(epoch + 1, 0, steps_per_epoch)``).
        steps_per_epoch: ``distill.steps_per_epoch`` (the trackers' step axis).
    """

    def __init__(self, run_dir: Path, accelerator: Accelerator, trackers: Trackers, steps_per_epoch: int) -> None:
        self.path, self.accelerator, self.trackers = Path(run_dir) / "metrics.jsonl", accelerator, trackers
        self.steps_per_epoch = steps_per_epoch
        self.history: list[dict] = []

    def log(self, record: dict) -> dict:
        """Append an epoch's record (tensors read to numbers) to the history and to metrics.jsonl."""
        record = to_numbers(record)
        self.history.append(record)
        if self.accelerator.is_main_process:
            append_line(self.path, json.dumps(record))  # never half a line, even on a full disk
            self.trackers.log(
                {f"epoch/{k}": v for k, v in record.items()},
                step=global_step(record["epoch"] + 1, 0, self.steps_per_epoch),
            )
        return record

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        """Continue a checkpoint's history; metrics.jsonl drops the lines of later epochs."""
        self.history = list(state["history"])
        if self.accelerator.is_main_process:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.history))


def write_run_record(
    run_dir: Path,
    cfg,
    resolved: dict,
    session: dict,
    accelerator: Accelerator,
    lte: torch.Tensor | None = None,
    class_names: list[str] | None = None,
) -> None:
    """What a run is, next to it (process 0 only): ``config.json`` (the config, what was resolved
    at run time, and one entry per session: ``session`` plus the config it ran with), ``run.yaml``
    (reproduces the run with ``config=run.yaml``) and the LTE pool's nearest classes."""
    if not accelerator.is_main_process:
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    sessions = json.loads(path.read_text()).get("sessions", []) if cfg.run.resume and path.is_file() else []
    sessions.append(
        {"started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), **session, "config": cfg.to_dict()}
    )
    atomic_write_json(path, {**cfg.to_dict(), "resolved": resolved, "sessions": sessions})
    atomic_write_text(run_dir / "run.yaml", cfg.to_yaml())
    if lte is not None:  # the inter-class structure of the LTE pool
        atomic_write_json(run_dir / "lte_neighbours.json", lte_nearest_classes(lte.cpu(), class_names, k=3))
