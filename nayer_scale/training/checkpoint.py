"""Checkpoints of a run: atomic folders of pickle-free state, written by every process together.

    checkpoints/
      latest                        name of the newest complete checkpoint
      epoch-0007/                   end of epoch 7
      epoch-0008-b0001-s00000050/   mid-epoch safe point: 1 synthesis batch and 50 student steps of epoch 8 done
        meta.json                   epoch, position, config, world size, format
        shared.safetensors/.json    state identical on every process (written by process 0)
        process-000.safetensors/.json  each process's own state (RNG streams, generator, memory bank, ...)

Components take part through the ``Stateful`` protocol (``state_dict`` / ``load_state_dict``).
Tensors are stored with safetensors and everything else as JSON (``nayer_scale.storage``): loading
never unpickles, so a tampered run folder on shared storage cannot run code on the nodes that resume
it. A checkpoint is written into ``<name>.tmp`` and renamed when every process has written its part;
then ``latest`` moves. A crash at any point leaves the previous checkpoint intact; an error while
writing (a full disk) also removes the unfinished ``<name>.tmp`` folder.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Protocol, runtime_checkable

from accelerate import Accelerator

from ..config import ConfigError, check_resume_compatible
from ..storage import atomic_write_json, atomic_write_text, load_state, save_state

__all__ = ["CheckpointManager", "Stateful", "checkpoint_name"]

FORMAT = "nayer-scale-checkpoint-2"
_NAME = re.compile(r"epoch-(\d+)(?:-b(\d+)-s(\d+))?")


@runtime_checkable
class Stateful(Protocol):
    """What a checkpoint stores of a component."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def checkpoint_name(epoch: int, position: dict | None = None) -> str:
    """``epoch-XXXX`` (end of epoch), or ``epoch-XXXX-bBBBB-sSSSSSSSS`` for a mid-epoch position
    with B synthesis batches and S student steps of epoch XXXX done."""
    name = f"epoch-{epoch:04d}"
    if position is not None:
        name += f"-b{position['synthesis_batches']:04d}-s{position['distill_steps']:08d}"
    return name


def _order(path: Path) -> tuple:  # a mid-epoch checkpoint comes before its epoch's end
    epoch, batches, steps = _NAME.fullmatch(path.name).groups()
    return (int(epoch), 0, int(batches), int(steps)) if batches else (int(epoch), 1, 0, 0)


class CheckpointManager:
    """Save, find, load and prune the checkpoints of ``run_dir/checkpoints``.

    Args:
        ckpt_dir: the checkpoints folder (shared by all processes).
        accelerator: barriers and process identity.
        keep: complete checkpoints kept (older ones are deleted after a new one is complete).
    """

    def __init__(self, ckpt_dir: Path, accelerator: Accelerator, keep: int) -> None:
        self.dir, self.accelerator, self.keep = Path(ckpt_dir), accelerator, keep
        self.rank = accelerator.process_index

    def latest(self) -> Path | None:
        """The folder named in ``latest``, or None when there is no complete checkpoint."""
        pointer = self.dir / "latest"
        return self.dir / pointer.read_text().strip() if pointer.is_file() else None

    def save(self, name: str, meta: dict, shared: dict[str, Stateful], process: dict[str, Stateful]) -> Path:
        """Write checkpoint ``name``: ``meta`` (JSON) and the shared components from process 0,
        every process's own components from that process. A collective: all processes call it.

        Raises:
            DiskFullError: the disk or quota filled while writing; the unfinished ``<name>.tmp``
                folder is removed and the previous checkpoint and ``latest`` are intact.
        """
        acc = self.accelerator
        tmp = self.dir / f"{name}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        try:
            save_state(tmp / f"process-{self.rank:03d}", {k: c.state_dict() for k, c in process.items()})
            if acc.is_main_process:
                save_state(tmp / "shared", {k: c.state_dict() for k, c in shared.items()})
                atomic_write_json(tmp / "meta.json", {"format": FORMAT, "world_size": acc.num_processes, **meta})
        except BaseException:  # e.g. a full disk (DiskFullError): keep no partial checkpoint behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        acc.wait_for_everyone()
        final = self.dir / name
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            atomic_write_text(self.dir / "latest", name)
            self._prune()
        acc.wait_for_everyone()
        return final

    def read_meta(self, path: Path) -> dict:
        """The meta.json of checkpoint ``path``.

        Raises:
            ConfigError: the folder is not a checkpoint of this format (e.g. an older, pickled one:
                it is never unpickled), or was written by another number of processes.
        """
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            pickled = sorted(p.name for p in path.glob("*.pt"))
            raise ConfigError(
                f"cannot resume {path}: no meta.json"
                + (
                    f"; it holds pickled files {pickled} from an older nayer-scale, which are never loaded "
                    "(loading a pickle can run code)"
                    if pickled
                    else ""
                )
                + ". Start a new run.run_dir."
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ConfigError(
                f"cannot resume {path}: checkpoint format {meta.get('format')!r}, this version "
                f"reads {FORMAT!r}. Start a new run.run_dir."
            )
        if meta["world_size"] != self.accelerator.num_processes:
            raise ConfigError(
                f"cannot resume {path}: it was written by {meta['world_size']} processes, this run "
                f"has {self.accelerator.num_processes}; launch with --num_processes {meta['world_size']}"
            )
        return meta

    def load(self, path: Path, shared: dict[str, Stateful], process: dict[str, Stateful], device="cpu") -> None:
        """Restore the components from checkpoint ``path`` (shared ones first, in the given order).

        Raises:
            FileNotFoundError: this process's part is missing.
        """
        own = path / f"process-{self.rank:03d}"
        if not own.with_suffix(".json").is_file():
            raise FileNotFoundError(f"checkpoint state of process {self.rank} is missing: {own}.json")
        shared_state = load_state(path / "shared", device=device)
        for key, component in shared.items():
            component.load_state_dict(shared_state[key])
        own_state = load_state(own, device=device)
        for key, component in process.items():
            component.load_state_dict(own_state[key])

    def resume(
        self, config: dict, shared: dict[str, Stateful], process: dict[str, Stateful]
    ) -> tuple[Path, dict, list[str]] | None:
        """Load the latest complete checkpoint into the components, after checking that ``config``
        (the run's config as a dict) may continue it (``config.resume.check_resume_compatible``).

        Returns:
            None when there is no complete checkpoint, else (its folder, its meta, the allowed
            config changes since it).

        Raises:
            ConfigError: a changed config field that may not change between sessions (named with
                both values), another number of processes, an unreadable checkpoint.
        """
        if self.accelerator.is_main_process:  # a killed job's half-written checkpoint (this job holds the folder)
            for partial in self.dir.glob("*.tmp"):
                shutil.rmtree(partial, ignore_errors=True)
        path = self.latest()
        if path is None:
            return None
        meta = self.read_meta(path)
        changes = check_resume_compatible(meta["config"], config)
        self.load(path, shared, process)
        return path, meta, changes

    def referenced(self, pattern: re.Pattern) -> set[str]:
        """Every match of ``pattern`` in the process parts (``process-*.json``) of the complete
        checkpoints kept: e.g. the memory-bank shards a resume from any of them needs."""
        found: set[str] = set()
        for path in self.dir.glob("epoch-*/process-*.json"):
            if _NAME.fullmatch(path.parent.name):
                found.update(pattern.findall(path.read_text()))
        return found

    def _prune(self) -> None:
        done = sorted((p for p in self.dir.glob("epoch-*") if p.is_dir() and _NAME.fullmatch(p.name)), key=_order)
        for old in done[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
