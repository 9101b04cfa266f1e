"""Experiment trackers of a run (``run.log_with``): TensorBoard, Weights & Biases, trackio, MLflow,
through accelerate's trackers (``Accelerator(log_with=...)``, ``init_trackers``, ``log``).

What goes there: the run's config once (flattened ``section.key`` names), every epoch's record (the
numbers of ``metrics.jsonl``), the losses every ``run.log_every_steps`` student steps and of every
synthesis batch, and the epoch's sample grid as an image where the tracker takes images. One step
axis serves all of them (trackers want steps that never go down): ``epoch * distill.steps_per_epoch +
step`` (``global_step``), so warm-up epochs, which have no student step, keep their own steps too.

A resumed run continues its tracker runs: the W&B run id, the trackio run name and the MLflow run
id are kept in ``<run_dir>/trackers.json``; TensorBoard appends to ``<run_dir>/tensorboard/``.
Only the main process talks to the trackers (accelerate's rule).
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from ..config.schema import TRACKERS
from ..extras import require
from ..storage import atomic_write_json

__all__ = ["TRACKERS", "Trackers", "global_step", "tracker_names"]

#: tracker -> (import name, extra of nayer-scale)
_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "trackio": ("trackio", "trackio"),
    "mlflow": ("mlflow", "mlflow"),
}
PROJECT = "nayer-scale"


def tracker_names(spec: str, check_installed: bool = True) -> list[str]:
    """The trackers of ``run.log_with``: "none", "all" (every one whose package is installed), or
    a comma-separated list of tensorboard, wandb, trackio, mlflow.

    Raises:
        ConfigError: an unknown name.
        MissingExtraError: a named tracker's package is not installed (with ``check_installed``).
    """
    spec = spec.strip().lower()
    if spec in ("", "none"):
        return []
    if spec == "all":
        return [t for t in TRACKERS if importlib.util.find_spec(_PACKAGES[t][0]) is not None]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(
            f"run.log_with={spec!r}: unknown tracker {', '.join(unknown)}; use none, all, or a comma-"
            f"separated list of {', '.join(TRACKERS)}"
        )
    if check_installed:
        for name in names:
            module, extra = _PACKAGES[name]
            require(module, extra, f"run.log_with={name}")
    return names


def global_step(epoch: int, step: int, steps_per_epoch: int) -> int:
    """The trackers' step of student step ``step`` (or synthesis batch ``step``) of ``epoch``."""
    return epoch * steps_per_epoch + step


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


class Trackers:
    """The trackers of one run on the main process (a no-op elsewhere and with none configured).

    Args:
        accelerator: built with ``log_with=names`` (``training.setup.build_accelerator``).
        names: the trackers (``tracker_names``).
        run_dir: the run folder (``trackers.json`` and TensorBoard's events go there).
    """

    def __init__(self, accelerator, names: list[str], run_dir: str | Path) -> None:
        self.accelerator, self.names, self.run_dir = accelerator, list(names), Path(run_dir)
        self.active = bool(self.names) and accelerator.is_main_process
        self.ids_path = self.run_dir / "trackers.json"

    def start(self, config: dict, resumed: bool) -> None:
        """Start (or, for a resumed run, continue) every tracker's run, with the flattened config."""
        if not self.names:
            return
        ids = json.loads(self.ids_path.read_text()) if resumed and self.ids_path.is_file() else {}
        ids.setdefault("wandb_id", uuid.uuid4().hex[:12])
        ids.setdefault("trackio_name", f"{self.run_dir.name}-{uuid.uuid4().hex[:6]}")
        name = self.run_dir.name
        init_kwargs: dict[str, dict[str, Any]] = {
            "wandb": {"id": ids["wandb_id"], "resume": "allow", "name": name, "dir": str(self.run_dir)},
            "trackio": {"name": ids["trackio_name"], "resume": "allow"},
            "mlflow": {"run_name": name, **({"run_id": ids["mlflow_run_id"]} if "mlflow_run_id" in ids else {})},
        }
        values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in _flat(config).items()}
        self.accelerator.init_trackers(
            PROJECT, config=values, init_kwargs={k: v for k, v in init_kwargs.items() if k in self.names}
        )
        if "mlflow" in self.names and self.active:
            ids["mlflow_run_id"] = self.accelerator.get_tracker("mlflow", unwrap=True).info.run_id
        if self.active:
            atomic_write_json(self.ids_path, ids)

    def log(self, values: dict[str, Any], step: int) -> None:
        """Log the numbers of ``values`` (other values are left out) at ``step``."""
        if not self.active:
            return
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            self.accelerator.log(numbers, step=step)

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        """Log ``image`` (H, W, 3) or (H, W) uint8 to every tracker that takes images."""
        if not self.active:
            return
        for name in self.names:
            tracker = self.accelerator.get_tracker(name, unwrap=True)
            if name == "tensorboard":
                tracker.add_image(key, image if image.ndim == 3 else image[..., None], step, dataformats="HWC")
            elif name == "wandb":
                tracker.log({key: require("wandb", "wandb").Image(image)}, step=step)
            elif name == "trackio":
                tracker.log({key: require("trackio", "trackio").Image(image)}, step=step)
            elif name == "mlflow":
                require("mlflow", "mlflow").log_image(image, key=key, step=step)

    def finish(self) -> None:
        """End every tracker's run (flushes TensorBoard's events)."""
        if self.names:
            self.accelerator.end_training()
