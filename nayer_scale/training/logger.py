"""One metrics logger: per-epoch records to ``metrics.jsonl`` (and TensorBoard), the run's history,
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
        accelerator: process identity and the TensorBoard tracker.
        tensorboard: also log numbers to TensorBoard (tracker initialised by the trainer).
    """

    def __init__(self, run_dir: Path, accelerator: Accelerator, tensorboard: bool) -> None:
        self.path, self.accelerator, self.tensorboard = Path(run_dir) / "metrics.jsonl", accelerator, tensorboard
        self.history: list[dict] = []

    def log(self, record: dict) -> dict:
        """Append an epoch's record (tensors read to numbers) to the history and to metrics.jsonl."""
        record = to_numbers(record)
        self.history.append(record)
        if self.accelerator.is_main_process:
            append_line(self.path, json.dumps(record))  # never half a line, even on a full disk
            if self.tensorboard:
                self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))},
                                     step=record["epoch"])
        return record

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        """Continue a checkpoint's history; metrics.jsonl drops the lines of later epochs."""
        self.history = list(state["history"])
        if self.accelerator.is_main_process:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.history))


def write_run_record(run_dir: Path, cfg, resolved: dict, session: dict, accelerator: Accelerator,
                     lte: torch.Tensor | None = None, class_names: list[str] | None = None) -> None:
    """What a run is, next to it (process 0 only): ``config.json`` (the config, what was resolved
    at run time, and one entry per session: ``session`` plus the config it ran with), ``run.yaml``
    (reproduces the run with ``config=run.yaml``), the LTE pool's nearest classes, and the
    TensorBoard hyper-parameters."""
    if not accelerator.is_main_process:
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    sessions = json.loads(path.read_text()).get("sessions", []) if cfg.run.resume and path.is_file() else []
    sessions.append({"started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), **session,
                     "config": cfg.to_dict()})
    atomic_write_json(path, {**cfg.to_dict(), "resolved": resolved, "sessions": sessions})
    atomic_write_text(run_dir / "run.yaml", cfg.to_yaml())
    if lte is not None:  # the inter-class structure of the LTE pool
        atomic_write_json(run_dir / "lte_neighbours.json", lte_nearest_classes(lte.cpu(), class_names, k=3))
    if cfg.run.tensorboard:
        accelerator.init_trackers("nayer", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                   for k, v in _flat(cfg.to_dict()).items()})


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
