"""Publish what a run made, as Hugging Face hub artifacts.

    python -m nayer_scale.export RUN_DIR --format hf OUT [--push-to-hub REPO] [--push-student-to-hub REPO]
                                 [--command "accelerate launch launch/distill.py ..."]

writes

* ``OUT/dataset/``: the memory bank as a ``datasets.DatasetDict`` (``save_to_disk``) with one split,
  ``train``: one row per synthetic image, features ``image`` (``Image``: PNG, grey or RGB),
  ``label`` (``ClassLabel`` with the run's class names), ``process`` (the rank that synthesised it)
  and ``batch`` (its synthesis batch = memory-bank shard index), saved in one arrow shard per
  process that wrote any; plus ``README.md``, a dataset card with the run's teacher, method, numbers
  and ``run.yaml``. ``--push-to-hub REPO`` uploads it (``DatasetDict.push_to_hub``, card first).
  The folder is itself an evaluation / training set: ``eval.dataset=hf eval.hf_path=OUT/dataset
  eval.hf_split=train``.
* ``OUT/student/``: the distilled student (``student.safetensors`` of the run) as
  ``model.safetensors``, ``config.json`` (architecture, classes, normalisation, input size; see
  ``nayer_scale.models.io.save_model_folder``), ``README.md`` (model card: teacher, method, top-1,
  device-hours, the command) and ``run.yaml``. ``teacher.arch=hf:OUT/student`` loads it back, so a
  distilled student can itself become a teacher. ``--push-student-to-hub REPO`` uploads the folder.

The memory bank is read through ``nayer_scale.memory.MemoryBank``'s public API (``refresh``,
``state_dict()["manifests"]``, ``images_of``, ``labels``) as a reader rank that wrote nothing
(rank = number of writer ranks), so the run folder is not changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .extras import require

__all__ = ["export_hf", "export_memory_dataset", "export_student", "main"]


def _load_run(run_dir: Path) -> tuple[dict, str, dict | None]:
    """(config dict, run.yaml text, summary or None). FileNotFoundError if RUN_DIR is not a run folder."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json): give the run.run_dir of a run")
    config = json.loads(config_path.read_text())
    yaml_path = run_dir / "run.yaml"
    summary_path = run_dir / "summary.json"
    return (config, yaml_path.read_text() if yaml_path.is_file() else "",
            json.loads(summary_path.read_text()) if summary_path.is_file() else None)


def _class_names(run_dir: Path, config: dict) -> list[str]:
    student = run_dir / "student.safetensors"
    if student.is_file():
        from .models.io import read_metadata

        names = read_metadata(student).get("class_names")
        if names:
            return json.loads(names)
    t = config["teacher"]
    if t["class_names"] == "id2label":
        from .models.hf import read_hf_model_spec

        return list(read_hf_model_spec(t["arch"], check_batchnorm=False).class_names)
    from .lte import resolve_class_names

    return resolve_class_names(t["class_names"])


def _pct(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "not measured"


def _hours(summary: dict) -> str:
    hours = summary.get("device_hours")
    return f"{hours:.4f} {summary.get('device_hours_unit', '')}" if isinstance(hours, (int, float)) else "-"


def _numbers(summary: dict | None) -> str:
    if summary is None:
        return "The run has not finished (no summary.json): no final numbers.\n"
    return ("| method | teacher top-1 | student top-1 | held-out agreement | device-hours | processes | device |\n"
            "| --- | --- | --- | --- | --- | --- | --- |\n"
            f"| {summary.get('method')} | {_pct(summary.get('teacher_top1'))} | {_pct(summary.get('student_top1'))} | "
            f"{_pct(summary.get('student_agreement'))} | "
            f"{_hours(summary)} | "
            f"{summary.get('num_processes')} | {summary.get('device_kind')} |\n\n"
            f"Top-1 is on {summary.get('eval_images', 0)} real evaluation images (`eval.*` of the config); the "
            "held-out agreement is the student's top-1 agreement with the teacher on synthetic images it never "
            "trained on.\n")


def _teacher_line(config: dict) -> str:
    t = config["teacher"]
    weights = f", weights `{t['weights']}`" if t.get("weights") else ""
    return f"`{t['arch']}`{weights} ({t['in_channels']} x {t['image_size']} x {t['image_size']} input)"


def _dataset_card(config: dict, run_yaml: str, summary: dict | None, rows: int, names: list[str],
                  processes: int) -> str:
    method = config["synthesis"]["method"]
    return (
        "---\nlicense: other\ntask_categories:\n- image-classification\ntags:\n- synthetic\n"
        f"- data-free-knowledge-distillation\n- {method}\n---\n"
        f"# Synthetic images of a data-free distillation run ({method})\n\n"
        f"{rows} images synthesised by nayer-scale from the teacher {_teacher_line(config)} without any of its "
        f"training data: the memory bank of the run, by {processes} process(es). Method: {method} "
        "(NAYER: Tran et al., CVPR 2024, noisy-layer generation from label-text embeddings; images whose "
        "BatchNorm statistics match the teacher's).\n\n"
        "Columns: `image` (PNG), `label` (the pseudo label the image was synthesised for; "
        f"{len(names)} classes: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}), `process` (rank), "
        "`batch` (synthesis batch of that process).\n\n"
        f"## Numbers\n\n{_numbers(summary)}\n"
        "## Config (`run.yaml`: `accelerate launch launch/distill.py config=run.yaml` reproduces the run)\n\n"
        f"```yaml\n{run_yaml}```\n")


def export_memory_dataset(run_dir: str | Path, out: str | Path) -> Path:
    """Write the memory bank of ``run_dir`` as a ``datasets.DatasetDict`` (split ``train``) with a
    dataset card, in ``out`` (see the module docstring).

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: not a run folder, or a run without memory-bank shards.
    """
    datasets = require("datasets", "hf", "nayer-scale export --format hf")

    from .memory import MemoryBank

    run_dir, out = Path(run_dir), Path(out)
    config, run_yaml, summary = _load_run(run_dir)
    root = run_dir / "memory"
    ranks = sorted(int(p.stem.split("-r")[-1]) for p in root.glob("manifest-r*.json")) if root.is_dir() else []
    if not ranks:
        raise FileNotFoundError(f"{root} holds no memory-bank manifest (manifest-rRRR.json): nothing to export")
    reader = max(ranks) + 1  # a rank that wrote nothing: reading changes no file of the run
    bank = MemoryBank(root, rank=reader, world_size=reader + 1, cache="none")
    bank.refresh()
    entries = sorted((int(rank), int(e["index"])) for rank, es in bank.state_dict()["manifests"].items() for e in es)
    if not entries:
        raise FileNotFoundError(f"{root} lists no shard: nothing to export")
    labels = bank.labels.tolist()
    names = _class_names(run_dir, config)
    channels = config["teacher"]["in_channels"]

    def rows():
        start = 0
        for rank, index in entries:  # the bank's logical order: by (rank, index), then position in the shard
            images = bank.images_of(rank, index).numpy()
            for i, image in enumerate(images):
                pixels = image[0] if channels == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
                yield {"image": pixels, "label": labels[start + i], "process": rank, "batch": index}
            start += len(images)

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names),
                                  "process": datasets.Value("int32"), "batch": datasets.Value("int32")})
    ds = datasets.Dataset.from_list(list(rows()), features=features)
    processes = len({rank for rank, _ in entries})
    out.mkdir(parents=True, exist_ok=True)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(out), num_shards={"train": min(processes, len(ds))})
    from .storage import atomic_write_text

    atomic_write_text(out / "README.md", _dataset_card(config, run_yaml, summary, len(ds), names, processes))
    return out


def _command_line(command: str | None) -> str:
    return command or "accelerate launch launch/distill.py config=run.yaml  # run.yaml is in this folder"


def export_student(run_dir: str | Path, out: str | Path, command: str | None = None) -> Path:
    """Write the run's distilled student as a nayer-scale model folder (``model.safetensors``,
    ``config.json``, ``README.md`` model card, ``run.yaml``) that ``teacher.arch=hf:<out>`` loads.

    Args:
        command: the command that made the run, for the model card (default: the ``config=run.yaml``
            command that reproduces it).

    Raises:
        FileNotFoundError: no ``student.safetensors`` (the run has not finished: resume it).
    """
    from .models import build_model
    from .models.io import load_state_dict_file, read_metadata, save_model_folder
    from .storage import atomic_write_text

    run_dir, out = Path(run_dir), Path(out)
    config, run_yaml, summary = _load_run(run_dir)
    path = run_dir / "student.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished; continue it with run.resume=true "
                                "(the student is written at the end)")
    meta = read_metadata(path)
    names = json.loads(meta["class_names"])
    model = build_model(meta["arch"], len(names), int(meta["in_channels"]))
    model.load_state_dict(load_state_dict_file(path))
    method = config["synthesis"]["method"]
    summary = summary or {}
    hours = summary.get("device_hours")
    card = (
        "---\nlibrary_name: nayer-scale\ntags:\n- image-classification\n- knowledge-distillation\n"
        f"- data-free-knowledge-distillation\n- {method}\n---\n"
        f"# {meta['arch']} distilled without data from {config['teacher']['arch']}\n\n"
        f"A `{meta['arch']}` student ({len(names)} classes, {meta['in_channels']} x {meta['image_size']} x "
        f"{meta['image_size']} input, normalised with mean {json.loads(meta['mean'])} and std "
        f"{json.loads(meta['std'])} of [0, 1] pixels) trained by nayer-scale with {method} synthesis (NAYER: Tran "
        f"et al., CVPR 2024) from the teacher {_teacher_line(config)}, on synthetic images only.\n\n"
        f"- student top-1: {_pct(summary.get('student_top1'))} (teacher: {_pct(summary.get('teacher_top1'))}) on "
        f"{summary.get('eval_images', 0)} real evaluation images\n"
        f"- device-hours: {_hours(summary)} "
        f"({summary.get('num_processes', '?')} process(es), {summary.get('device_kind', '?')})\n"
        f"- command: `{_command_line(command)}`\n\n"
        "## Use\n\n```python\nfrom nayer_scale.models.hf import load_model_folder\n"
        "model, spec = load_model_folder(\"<this folder or hub id>\")  # (N, C, H, W) normalised input -> logits\n"
        "```\n\nAs a teacher: `teacher.arch=hf:<this folder or hub id>`.\n\n"
        f"## Numbers\n\n{_numbers(summary or None)}")
    extra = {"teacher": config["teacher"]["arch"], "method": method, "student_top1": summary.get("student_top1"),
             "teacher_top1": summary.get("teacher_top1"), "device_hours": hours,
             "device_hours_unit": summary.get("device_hours_unit"), "command": _command_line(command)}
    save_model_folder(model, out, architecture=meta["arch"], class_names=names, in_channels=int(meta["in_channels"]),
                      image_size=int(meta["image_size"]), mean=tuple(json.loads(meta["mean"])),
                      std=tuple(json.loads(meta["std"])), card=card, extra=extra)
    if run_yaml:
        atomic_write_text(out / "run.yaml", run_yaml)
    return out


def export_hf(run_dir: str | Path, out: str | Path, push_to_hub: str | None = None,
              push_student_to_hub: str | None = None, command: str | None = None) -> dict[str, Path]:
    """``OUT/dataset`` (``export_memory_dataset``) and ``OUT/student`` (``export_student``, when the
    run has finished), optionally uploaded. Returns the written folders by name."""
    out = Path(out)
    written = {"dataset": export_memory_dataset(run_dir, out / "dataset")}
    if (Path(run_dir) / "student.safetensors").is_file() or push_student_to_hub:
        written["student"] = export_student(run_dir, out / "student", command)
    if push_to_hub:
        datasets = require("datasets", "hf", "nayer-scale export --format hf")
        import huggingface_hub

        api = huggingface_hub.HfApi()
        api.create_repo(push_to_hub, repo_type="dataset", exist_ok=True)
        api.upload_file(path_or_fileobj=str(written["dataset"] / "README.md"), path_in_repo="README.md",
                        repo_id=push_to_hub, repo_type="dataset")  # push_to_hub keeps the card, adds the features
        datasets.load_from_disk(str(written["dataset"])).push_to_hub(push_to_hub)
    if push_student_to_hub:
        import huggingface_hub

        api = huggingface_hub.HfApi()
        api.create_repo(push_student_to_hub, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(written["student"]), repo_id=push_student_to_hub, repo_type="model")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring). Errors are printed as one line; exit code 2."""
    parser = argparse.ArgumentParser(prog="python -m nayer_scale.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run folder (run.run_dir)")
    parser.add_argument("--format", choices=["hf"], required=True, help="hf: datasets + model folder")
    parser.add_argument("out", help="output folder (dataset/ and student/ go there)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the dataset to this hub dataset repository")
    parser.add_argument("--push-student-to-hub", metavar="REPO", help="upload the student to this hub model repository")
    parser.add_argument("--command", help="the command that made the run, for the model card")
    args = parser.parse_args(argv)
    try:
        written = export_hf(args.run_dir, args.out, args.push_to_hub, args.push_student_to_hub, args.command)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
