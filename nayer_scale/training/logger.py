"""One metrics logger: per-epoch records to ``metrics.jsonl`` (and TensorBoard), the run's history.

Records may hold device tensors; they are read to the host together, once per record.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import Accelerator

from ..storage import atomic_write_text

__all__ = ["MetricsLogger", "to_numbers"]


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
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
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
