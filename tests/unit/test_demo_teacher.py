"""The Fashion-MNIST teacher that ships with the package: what it records is what
``launch/train_teacher.py`` trains by default, and its recorded test top-1 is real."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from nayer_scale.config import DEMO_TEACHER
from nayer_scale.data import find_eval_data, load_eval_data
from nayer_scale.models.io import read_metadata
from nayer_scale.models.sources import build_teacher
from nayer_scale.recipes import get_preset

ROOT = Path(__file__).resolve().parents[2]


def _train_teacher_script():
    spec = importlib.util.spec_from_file_location("train_teacher", ROOT / "launch" / "train_teacher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_teacher_records_the_scripts_default_settings():
    script = _train_teacher_script()
    meta = read_metadata(DEMO_TEACHER)
    assert json.loads(meta["train_settings"]) == script.training_settings(script.parse_args([])), (
        "the shipped teacher was trained with other settings than launch/train_teacher.py's defaults: retrain it "
        "with `python launch/train_teacher.py --out nayer_scale/assets/fashion_mnist_resnet20.safetensors --force`"
    )
    assert meta["commit"] and meta["commit"] != "unknown"
    assert json.loads(meta["precision"])["mixed_precision"] in ("no", "bf16", "fp16")
    record = json.loads(Path(DEMO_TEACHER).with_suffix(".json").read_text())  # the readable copy beside it
    assert record["test_top1"] == meta["test_top1"] and record["commit"] == meta["commit"]
    assert get_preset("fashion_mnist").teacher.weights == DEMO_TEACHER


def test_shipped_teacher_reaches_its_recorded_top1_on_the_real_test_split():
    try:
        find_eval_data("fashion_mnist", None)
    except FileNotFoundError as err:
        pytest.fail(f"the real Fashion-MNIST test split is needed (bash scripts/get_fashion_mnist.sh): {err}")
    meta = read_metadata(DEMO_TEACHER)
    teacher = build_teacher("resnet20", DEMO_TEACHER, num_classes=10, in_channels=1).eval()
    images, labels = load_eval_data("fashion_mnist", None)
    mean, std = json.loads(meta["mean"])[0], json.loads(meta["std"])[0]
    teacher = teacher.to(memory_format=torch.channels_last)  # as the trainer evaluates it on CPU
    with torch.inference_mode():
        correct = sum(
            int(
                (
                    teacher(
                        ((images[i : i + 250].float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
                    ).argmax(1)
                    == labels[i : i + 250]
                ).sum()
            )
            for i in range(0, len(labels), 250)
        )
    assert len(labels) == 10_000
    assert correct / len(labels) == pytest.approx(float(meta["test_top1"]), abs=0.002)
    assert correct / len(labels) > 0.9
