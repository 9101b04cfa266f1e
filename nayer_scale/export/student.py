"""The distilled student as a hub model folder, in one of two formats.

* **timm** (students whose ``state_dict`` keys are timm's: the zoo's torchvision-layout
  ``tv_resnet18/34/50`` = timm's ``resnet18/34/50``, :data:`nayer_scale.models.timm_teacher.ZOO_EQUIVALENTS`):
  ``model.safetensors`` and the ``config.json`` that timm's ``push_to_hub`` / ``save_for_hf`` write
  (``architecture``, ``num_classes``, ``num_features``, ``global_pool``, ``label_names``, ``model_args``
  with ``in_chans``, ``pretrained_cfg`` with input size, ``crop_pct``, mean, std, ``first_conv``,
  ``classifier``), plus the run's facts (``teacher``, ``method``, ``student_top1``, ...) at the top
  level, which timm ignores. ``timm.create_model("hf-hub:<repo>", pretrained=True)`` (or
  ``"local-dir:<folder>"``) loads it; so does ``teacher.arch=hf:<folder or repo>``, without timm
  installed (the zoo's equivalent, :mod:`nayer_scale.models.timm_teacher`). The same weights load into
  ``torchvision.models.resnet18/34/50`` (same keys).
* **nayer-scale** (every other student: the CIFAR ResNets ``resnet8/20/...``, whose 3x3 stem, three
  stages and ``shortcut`` / ``linear`` names are not timm's ResNet; WRN, VGG, MobileNetV2):
  :func:`nayer_scale.models.io.save_model_folder`, which ``teacher.arch=hf:<folder>`` loads back.

Both get ``README.md`` (the model card, :func:`nayer_scale.export.cards.model_card`) and ``run.yaml``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from torch import nn

from ..models.timm_teacher import ZOO_EQUIVALENTS
from .cards import model_card
from .run_folder import RunFolder, load_run

__all__ = [
    "STUDENT_FORMATS",
    "TIMM_ARCHITECTURES",
    "TORCHVISION_ARCHITECTURES",
    "export_student",
    "save_timm_folder",
    "student_format_of",
]

STUDENT_FORMATS = ("auto", "timm", "nayer-scale")
#: zoo architecture -> timm architecture with the same state_dict keys and forward pass
TIMM_ARCHITECTURES = {zoo: timm for timm, zoo in ZOO_EQUIVALENTS.items()}
#: zoo architecture -> torchvision.models builder with the same state_dict keys
TORCHVISION_ARCHITECTURES = {
    "tv_resnet18": "resnet18",
    "tv_resnet34": "resnet34",
    "tv_resnet50": "resnet50",
    "tv_mobilenet_v2": "mobilenet_v2",
}
_NUM_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


def student_format_of(arch: str, requested: str = "auto") -> str:
    """``timm`` or ``nayer-scale``: the format a student of zoo architecture ``arch`` is written in.

    Raises:
        ValueError: an unknown format, or ``timm`` asked for an architecture whose keys are not timm's.
    """
    if requested not in STUDENT_FORMATS:
        raise ValueError(f"unknown student format {requested!r}: use one of {', '.join(STUDENT_FORMATS)}")
    if requested == "timm" and arch not in TIMM_ARCHITECTURES:
        raise ValueError(
            f"the student {arch} has no timm equivalent (its state_dict keys are not a timm model's; "
            f"only {', '.join(TIMM_ARCHITECTURES)} are): use --student-format nayer-scale or auto"
        )
    if requested == "auto":
        return "timm" if arch in TIMM_ARCHITECTURES else "nayer-scale"
    return requested


def _crop_pct(config: dict, image_size: int) -> float:
    """timm's ``crop_pct`` of the run's evaluation transform: ``image_size / eval resize`` for resized
    sets (ImageNet, hf; ``eval.resize`` 0 = ``image_size / 0.875``), 1.0 for the built-in test splits
    (evaluated at their own size), timm's default 0.875 for a run that evaluated on nothing; rounded down
    to 4 decimals so that timm's ``floor(image_size / crop_pct)`` gives the resize back."""
    e = config.get("eval", {})
    if e.get("dataset") not in ("imagenet", "hf"):
        return 1.0 if e.get("dataset") not in (None, "none") else 0.875
    resize = int(e.get("resize") or round(image_size / 0.875))
    return math.floor(image_size / resize * 10_000) / 10_000


def save_timm_folder(
    model: nn.Module,
    out: str | Path,
    *,
    architecture: str,
    class_names: list[str],
    in_channels: int,
    image_size: int,
    mean: list[float],
    std: list[float],
    crop_pct: float,
    card: str,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` (a zoo model with timm's keys) as a timm hub folder: ``model.safetensors``,
    ``config.json`` (timm's layout, module docstring; ``extra`` at the top level) and ``README.md``.

    Args:
        architecture: the timm architecture (``resnet50``); mean, std: of [0, 1] pixels, one per channel;
        crop_pct: the eval centre-crop fraction (timm resizes the shorter side to ``image_size / crop_pct``).

    Returns:
        the folder.
    """
    from ..models.io import save_model
    from ..storage import atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, out / "model.safetensors", {"format": "pt"})
    pool = max(1, math.ceil(image_size / 32))
    pretrained_cfg = {
        "tag": "nayer",
        "custom_load": False,
        "input_size": [in_channels, image_size, image_size],
        "fixed_input_size": False,
        "interpolation": "bilinear",
        "crop_pct": crop_pct,
        "crop_mode": "center",
        "mean": list(mean),
        "std": list(std),
        "num_classes": len(class_names),
        "pool_size": [pool, pool],
        "first_conv": "conv1",
        "classifier": "fc",
    }
    config = {
        "architecture": architecture,
        "num_classes": len(class_names),
        "num_features": _NUM_FEATURES[architecture],
        "global_pool": "avg",
        "label_names": list(class_names),
        "model_args": {"num_classes": len(class_names), "in_chans": int(in_channels), "global_pool": "avg"},
        "pretrained_cfg": pretrained_cfg,
        **(extra or {}),
    }
    atomic_write_json(out / "config.json", config)
    atomic_write_text(out / "README.md", card)
    return out


def _usage(arch: str, fmt: str, num_classes: int, in_channels: int, repo_id: str | None) -> str:
    """The "Use" section of the model card: nayer-scale, and timm / torchvision where the keys are theirs."""
    where = repo_id or "<this folder or hub id>"
    text = (
        "```python\nfrom nayer_scale.models.hf import load_model_folder\n"
        f'model, spec = load_model_folder("{where}")  # (N, C, H, W) normalised input -> logits\n```\n\n'
        f"As a teacher: `teacher.arch=hf:{where}`.\n"
    )
    if fmt == "timm":
        hub = f"hf-hub:{repo_id}" if repo_id else "hf-hub:<hub id>"
        text += (
            "\nWith timm (this folder is a timm repository):\n\n```python\nimport timm\n"
            f'model = timm.create_model("{hub}", pretrained=True)  # a local copy: "local-dir:<folder>"\n'
            "```\n"
        )
    if arch in TORCHVISION_ARCHITECTURES and in_channels == 3:
        text += (
            "\nWith torchvision (the same `state_dict` keys):\n\n```python\nimport torchvision\n"
            "from safetensors.torch import load_file\n"
            f"model = torchvision.models.{TORCHVISION_ARCHITECTURES[arch]}(num_classes={num_classes})\n"
            'model.load_state_dict(load_file("model.safetensors"))\n```\n'
        )
    return text


def _command_line(command: str | None) -> str:
    return command or "accelerate launch launch/distill.py config=run.yaml  # run.yaml is in this folder"


def _read_student(run: RunFolder) -> tuple[nn.Module, dict]:
    from ..models import build_model
    from ..models.io import load_state_dict_file, read_metadata

    path = run.path / "student.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the run has not finished; continue it with run.resume=true "
            "(the student is written at the end)"
        )
    meta = read_metadata(path)
    names = json.loads(meta["class_names"])
    model = build_model(meta["arch"], len(names), int(meta["in_channels"]))
    model.load_state_dict(load_state_dict_file(path))
    return model, {
        "arch": meta["arch"],
        "names": names,
        "in_channels": int(meta["in_channels"]),
        "image_size": int(meta["image_size"]),
        "mean": json.loads(meta["mean"]),
        "std": json.loads(meta["std"]),
    }


def _student_card(
    run: RunFolder,
    s: dict,
    fmt: str,
    command: str | None,
    license: str,
    dataset_repo: str | None,
    repo_id: str | None,
) -> str:
    """The model card (README.md) of the student ``s`` (from :func:`_read_student`) written in format ``fmt``."""
    teacher = re.sub(r"[^A-Za-z0-9._-]+", "-", str(run.teacher["arch"]).split(":")[-1].rstrip("/").split("/")[-1])
    model_name = repo_id.split("/")[-1] if repo_id else f"{s['arch']}-{run.method}-from-{teacher}"
    return str(
        model_card(
            run,
            arch=s["arch"],
            class_names=s["names"],
            in_channels=s["in_channels"],
            image_size=s["image_size"],
            mean=s["mean"],
            std=s["std"],
            command=_command_line(command),
            usage=_usage(s["arch"], fmt, len(s["names"]), s["in_channels"], repo_id),
            library_name="timm" if fmt == "timm" else "nayer-scale",
            model_name=model_name,
            license=license,
            dataset_repo=dataset_repo,
            extra_tags=("timm",) if fmt == "timm" else (),
        )
    )


def _run_facts(run: RunFolder, command: str | None) -> dict:
    """The run's facts written at the top level of ``config.json`` (timm ignores them)."""
    summary = run.summary or {}
    return {
        "teacher": run.teacher["arch"],
        "method": run.method,
        "student_top1": summary.get("student_top1"),
        "teacher_top1": summary.get("teacher_top1"),
        "device_hours": summary.get("device_hours"),
        "device_hours_unit": summary.get("device_hours_unit"),
        "command": _command_line(command),
    }


def _write_folder(model: nn.Module, out: Path, fmt: str, s: dict, run: RunFolder, card: str, extra: dict) -> None:
    """``model.safetensors``, ``config.json`` and ``README.md`` in format ``fmt`` (``timm`` or ``nayer-scale``)."""
    if fmt == "timm":
        save_timm_folder(
            model,
            out,
            architecture=TIMM_ARCHITECTURES[s["arch"]],
            class_names=s["names"],
            in_channels=s["in_channels"],
            image_size=s["image_size"],
            mean=s["mean"],
            std=s["std"],
            crop_pct=_crop_pct(run.config, s["image_size"]),
            card=card,
            extra={"nayer_scale_architecture": s["arch"], **extra},
        )
    else:
        from ..models.io import save_model_folder

        save_model_folder(
            model,
            out,
            architecture=s["arch"],
            class_names=s["names"],
            in_channels=s["in_channels"],
            image_size=s["image_size"],
            mean=tuple(s["mean"]),
            std=tuple(s["std"]),
            card=card,
            extra=extra,
        )


def export_student(
    run_dir: str | Path,
    out: str | Path,
    command: str | None = None,
    *,
    student_format: str = "auto",
    license: str = "other",
    dataset_repo: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write the run's distilled student as a hub model folder (``model.safetensors``, ``config.json``,
    ``README.md`` model card, ``run.yaml``) that ``teacher.arch=hf:<out>`` loads, in timm's format where
    the student has timm's keys (module docstring).

    Args:
        command: the command that made the run, for the model card (default: the ``config=run.yaml``
            command that reproduces it).
        student_format: ``auto`` (timm where the keys match, else nayer-scale), ``timm`` or ``nayer-scale``.
        license: the card's hub license id; dataset_repo: the hub repository of the synthetic set (the
            card's ``datasets``); repo_id: the hub repository the student goes to (the card's name, usage).

    Raises:
        FileNotFoundError: no ``student.safetensors`` (the run has not finished: resume it).
        ValueError: ``student_format=timm`` for a student without timm's keys.
    """
    run, out = load_run(run_dir), Path(out)
    model, s = _read_student(run)
    fmt = student_format_of(s["arch"], student_format)
    card = _student_card(run, s, fmt, command, license, dataset_repo, repo_id)
    _write_folder(model, out, fmt, s, run, card, _run_facts(run, command))
    if run.run_yaml:
        from ..storage import atomic_write_text

        atomic_write_text(out / "run.yaml", run.run_yaml)
    return out
