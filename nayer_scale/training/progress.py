"""Where a run stands: the typed in-epoch state a mid-epoch checkpoint carries, and the epoch bar.

The sums stay on the training device while the epoch runs (no host read per synthesis batch or
student step); they are read once, together, when a record is written or a checkpoint is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

__all__ = ["EpochProgress", "epoch_bar", "bar_postfix"]

# Device accumulators: name -> dtype. float64 where the published record summed Python floats.
_SUMS = {
    "kd_sum": torch.float32,
    "ce_min": torch.float32,
    "diversity_sum": torch.float64,
    "agree": torch.int64,
    "agree_count": torch.int64,
}


@dataclass
class EpochProgress:
    """Position and running sums of one epoch.

    Attributes:
        epoch: the epoch (0-based).
        synthesis_batches: synthesis batches of this epoch done (each is one memory-bank shard).
        distill_steps: student steps of this epoch done.
        sums: device scalars: ``kd_sum`` (float32 sum of the KD losses of the steps done),
            ``ce_min`` (lowest synthesis CE of the epoch), ``diversity_sum`` (float64 sum of the
            feature diversity of its synthesis batches), ``agree`` / ``agree_count`` (int64: images
            of its synthesis batches the student classifies as the teacher does / probed).
        last_losses: the last synthesis batch's losses (device float32 scalars: loss, bn, ce, adv).
    """

    epoch: int
    synthesis_batches: int = 0
    distill_steps: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    last_losses: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def start(cls, epoch: int, device: torch.device) -> "EpochProgress":
        """A fresh epoch: nothing done, sums zero (``ce_min`` +inf)."""
        sums = {k: torch.zeros((), dtype=d, device=device) for k, d in _SUMS.items()}
        sums["ce_min"].fill_(math.inf)
        return cls(epoch, sums=sums)

    def add_synthesis(
        self, losses: dict[str, torch.Tensor], diversity: torch.Tensor | None, agree: torch.Tensor, count: int
    ) -> None:
        """Account one synthesis batch: its losses, feature diversity (None when not measured)
        and student-teacher agreement (``agree`` int64 scalar of ``count`` probed images)."""
        self.last_losses = {k: v.detach().float() for k, v in losses.items()}
        s = self.sums
        s["ce_min"] = torch.minimum(s["ce_min"], self.last_losses["ce"])
        if diversity is not None:
            s["diversity_sum"] += diversity.double()
        s["agree"] += agree
        s["agree_count"] += count
        self.synthesis_batches += 1

    def synthesis_record(self, n_batches: int, diversity_measured: bool) -> dict[str, torch.Tensor | None]:
        """The epoch record's synthesis entries after its ``n_batches`` batches: the last batch's
        losses (``synth_loss`` ...), the lowest CE and the mean feature diversity (None when not
        measured: a batch no larger than the number of classes)."""
        record: dict = {f"synth_{k}": v for k, v in self.last_losses.items()}
        record["synth_ce_min"] = self.sums["ce_min"]
        # mean over the epoch's batches: collapse shows *within* a synthesis batch
        record["synth_diversity"] = self.sums["diversity_sum"] / n_batches if diversity_measured else None
        return record

    def read(self) -> dict[str, float]:
        """All sums and last losses as Python numbers, in one host read."""
        names = list(self.sums) + [f"last_{k}" for k in self.last_losses]
        values = torch.stack([t.double() for t in list(self.sums.values()) + list(self.last_losses.values())])
        return dict(zip(names, values.tolist()))

    def state_dict(self) -> dict:
        """Plain numbers (JSON): position, sums and last losses."""
        numbers = self.read()
        return {
            "epoch": self.epoch,
            "synthesis_batches": self.synthesis_batches,
            "distill_steps": self.distill_steps,
            "sums": {k: numbers[k] for k in self.sums},
            "last_losses": {k: numbers[f"last_{k}"] for k in self.last_losses},
        }

    @classmethod
    def from_state(cls, state: dict, device: torch.device) -> "EpochProgress":
        """The inverse of ``state_dict`` (values restored bit-exactly in their dtypes)."""
        progress = cls.start(state["epoch"], device)
        progress.synthesis_batches, progress.distill_steps = state["synthesis_batches"], state["distill_steps"]
        for k, v in state["sums"].items():
            progress.sums[k] = torch.tensor(v, dtype=_SUMS[k], device=device)
        progress.last_losses = {
            k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in state["last_losses"].items()
        }
        return progress


def epoch_bar(start_epoch: int, epochs: int, enabled: bool) -> tqdm:
    """The run's progress bar over epochs ``start_epoch .. epochs - 1`` (drawn when ``enabled``:
    ``run.progress`` on the node's main process)."""
    return tqdm(range(start_epoch, epochs), initial=start_epoch, total=epochs, desc="NAYER", disable=not enabled)


def bar_postfix(record: dict) -> dict[str, str]:
    """The bar's postfix after an epoch: synthesis loss, KD loss and student top-1 of ``record``
    (the logged record: plain numbers), where present."""
    return {k: f"{record[k]:.3g}" for k in ("synth_loss", "kd", "student_top1") if record.get(k) is not None}
