"""``export_hf`` (dataset + student, optionally uploaded to the hub) and the command line
``python -m nayer_scale.export`` / ``nayer-scale export`` (usage: :mod:`nayer_scale.export`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..extras import require
from .dataset import export_memory_dataset
from .student import STUDENT_FORMATS, export_student

__all__ = ["export_hf", "main"]


def _push_dataset(folder: Path, repo: str) -> None:
    datasets = require("datasets", "hf", "nayer-scale export --format hf")
    import huggingface_hub

    api = huggingface_hub.HfApi()
    api.create_repo(repo, repo_type="dataset", exist_ok=True)
    api.upload_file(
        path_or_fileobj=str(folder / "README.md"), path_in_repo="README.md", repo_id=repo, repo_type="dataset"
    )  # push_to_hub keeps the card, adds the features
    datasets.load_from_disk(str(folder)).push_to_hub(repo)


def _push_student(folder: Path, repo: str) -> None:
    import huggingface_hub

    api = huggingface_hub.HfApi()
    api.create_repo(repo, repo_type="model", exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model")


def export_hf(
    run_dir: str | Path,
    out: str | Path,
    push_to_hub: str | None = None,
    push_student_to_hub: str | None = None,
    command: str | None = None,
    *,
    student_format: str = "auto",
    license: str = "other",
) -> dict[str, Path]:
    """``OUT/dataset`` (:func:`~nayer_scale.export.dataset.export_memory_dataset`) and ``OUT/student``
    (:func:`~nayer_scale.export.student.export_student`, when the run has finished), optionally uploaded:
    the dataset to ``push_to_hub`` (card first), the student folder to ``push_student_to_hub`` (its card
    names the dataset repository in ``datasets``).

    Args:
        student_format: ``auto``, ``timm`` or ``nayer-scale`` (see :mod:`nayer_scale.export.student`).
        license: the hub license id of both cards.

    Returns:
        the written folders by name (``dataset``, ``student``).

    Raises:
        FileNotFoundError, ValueError: as the two exports.
    """
    out = Path(out)
    written = {"dataset": export_memory_dataset(run_dir, out / "dataset", license=license)}
    if (Path(run_dir) / "student.safetensors").is_file() or push_student_to_hub:
        written["student"] = export_student(
            run_dir,
            out / "student",
            command,
            student_format=student_format,
            license=license,
            dataset_repo=push_to_hub,
            repo_id=push_student_to_hub,
        )
    if push_to_hub:
        _push_dataset(written["dataset"], push_to_hub)
    if push_student_to_hub:
        _push_student(written["student"], push_student_to_hub)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line (see :mod:`nayer_scale.export`). Errors are printed as one line; exit code 2."""
    from . import __doc__ as usage

    parser = argparse.ArgumentParser(prog="python -m nayer_scale.export", description=usage.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run folder (run.run_dir)")
    parser.add_argument("--format", choices=["hf"], required=True, help="hf: datasets + model folder")
    parser.add_argument("out", help="output folder (dataset/ and student/ go there)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the dataset to this hub dataset repository")
    parser.add_argument("--push-student-to-hub", metavar="REPO", help="upload the student to this hub model repository")
    parser.add_argument("--command", help="the command that made the run, for the model card")
    parser.add_argument(
        "--student-format",
        choices=STUDENT_FORMATS,
        default="auto",
        help="auto: timm's format for students with timm's keys (tv_resnet18/34/50), else nayer-scale's",
    )
    parser.add_argument(
        "--license",
        default="other",
        help="hub license id of the cards (the teacher's license governs what is distilled from it)",
    )
    args = parser.parse_args(argv)
    try:
        written = export_hf(
            args.run_dir,
            args.out,
            args.push_to_hub,
            args.push_student_to_hub,
            args.command,
            student_format=args.student_format,
            license=args.license,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
