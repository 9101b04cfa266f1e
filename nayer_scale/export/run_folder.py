"""Reading a finished (or unfinished) run folder for the export: ``config.json``, ``run.yaml``,
``summary.json`` and the teacher's class names. Nothing in the run folder is written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunFolder", "load_run"]


@dataclass(frozen=True)
class RunFolder:
    """What the export reads of a run folder (``run.run_dir``).

    Attributes:
        path: the run folder.
        config: the parsed ``config.json`` (the resolved config of the run, by section).
        run_yaml: the text of ``run.yaml`` ("" when missing).
        summary: the parsed ``summary.json``, None while the run has not finished.
    """

    path: Path
    config: dict
    run_yaml: str
    summary: dict | None

    @property
    def method(self) -> str:
        """The synthesis method (``synthesis.method``: nayer, deepinversion, fast, ...)."""
        return str(self.config["synthesis"]["method"])

    @property
    def teacher(self) -> dict:
        """The ``teacher`` section of the config."""
        return self.config["teacher"]

    def class_names(self) -> list[str]:
        """The teacher's K class names in index order: the student's metadata when the run finished,
        else the ``id2label`` of an ``hf:`` teacher, else ``teacher.class_names`` (a dataset key or file)."""
        student = self.path / "student.safetensors"
        if student.is_file():
            from ..models.io import read_metadata

            names = read_metadata(student).get("class_names")
            if names:
                return json.loads(names)
        t = self.teacher
        if t["class_names"] == "id2label":
            from ..models.hf import read_hf_model_spec

            return list(read_hf_model_spec(t["arch"], check_batchnorm=False).class_names)
        from ..lte import resolve_class_names

        return resolve_class_names(t["class_names"])


def load_run(run_dir: str | Path) -> RunFolder:
    """Read ``run_dir``'s ``config.json``, ``run.yaml`` and ``summary.json``.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json`` (not a run folder).
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json): give the run.run_dir of a run")
    yaml_path, summary_path = run_dir / "run.yaml", run_dir / "summary.json"
    return RunFolder(
        run_dir,
        json.loads(config_path.read_text()),
        yaml_path.read_text() if yaml_path.is_file() else "",
        json.loads(summary_path.read_text()) if summary_path.is_file() else None,
    )
