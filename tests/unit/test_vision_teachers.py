"""torchvision and timm teachers with the real libraries (the ``vision`` extra, a second environment:
``pip install -c constraints-vision.txt -e ".[vision]" pytest``; .ci/run runs this file there).

Offline: random weights only. torchvision's named weights are resolved for their metadata, and their
"download" is a random state dict put in the torch hub cache under the file name torchvision gives it
(with any real download made to fail); timm repositories are folders written by timm's own
``save_for_hf``, standing in for the hub.

Skipped, with the reason, only where torchvision or timm cannot be imported (the main environment,
whose CPU torch 2.13 PyPI's torchvision does not import beside); with NAYER_VISION_TESTS=required (CI's
vision step) that is an error instead, so the step cannot pass by skipping.
The runs of this topic (distillations, subprocesses) are in tests/integration/test_vision_teachers_runs.py.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers.vision_teachers import randomise_bn, require_vision
from nayer_scale.config import DEMO_TEACHER, ConfigError, NayerConfig
from nayer_scale.lte.classnames import get_class_names
from nayer_scale.models import build_model
from nayer_scale.models.hf import load_model_folder, read_hf_model_spec
from nayer_scale.models.hub import _TORCHVISION_DEFAULT, TORCHVISION_WEIGHTS
from nayer_scale.models.io import TeacherLoadError, save_model
from nayer_scale.models.sources import build_teacher, resolve_architecture, resolve_teacher

timm, torchvision, tvm = require_vision()
pytestmark = [pytest.mark.vision, pytest.mark.usefixtures("one_thread")]


def outputs(model: nn.Module, size: int = 64) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model(torch.randn(2, 3, size, size))


@pytest.fixture
def torch_hub(monkeypatch, tmp_path) -> Path:
    """An empty torch hub cache; any real download fails the test. Returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def cached(torch_hub: Path, weights, model: nn.Module) -> None:
    """Put ``model``'s state dict in the cache where torch.hub looks for ``weights``' download."""
    torch.save(model.state_dict(), torch_hub / weights.url.rsplit("/", 1)[-1])


def tv_config(arch: str, weights: str, **teacher) -> NayerConfig:
    cfg = NayerConfig()
    cfg.teacher.arch, cfg.teacher.weights = arch, weights
    for key, value in teacher.items():
        setattr(cfg.teacher, key, value)
    return cfg


# ---- torchvision -------------------------------------------------------------------------------


def test_frozen_url_table_is_torchvision_s():
    """The six torchvision:<arch>.<WEIGHTS> URLs kept for environments without torchvision are the
    URLs of torchvision's own enums (and DEFAULT means what torchvision says)."""
    for key, url in TORCHVISION_WEIGHTS.items():
        arch, tag = key.split(".")
        assert tvm.get_model_weights(arch)[tag].url == url, key
    for arch, tag in _TORCHVISION_DEFAULT.items():
        assert tvm.get_model_weights(arch)["DEFAULT"] is tvm.get_model_weights(arch)[tag]


def test_named_weights_give_normalisation_size_and_class_names():
    """teacher.weights=ResNet50_Weights.IMAGENET1K_V2 (metadata only, nothing downloaded): transforms()
    gives mean / std / crop 224 / resize 232, meta["categories"] the 1000 names."""
    weights = tvm.ResNet50_Weights.IMAGENET1K_V2
    resolved = resolve_teacher(tv_config("torchvision:resnet50", "ResNet50_Weights.IMAGENET1K_V2"))
    t = resolved.teacher
    assert (t.mean, t.std, t.in_channels, t.image_size) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, 224)
    assert resolved.eval_resize == 232 and resolved.class_names == weights.meta["categories"]
    assert t.class_names == "id2label" and t.weights == "ResNet50_Weights.IMAGENET1K_V2"
    # the preset's ImageNet settings agree; its class names (CLIP's readable ones) are 1000 names too
    cfg = tv_config(
        "torchvision:resnet50",
        "torchvision:resnet50.DEFAULT",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        in_channels=3,
        image_size=224,
        class_names="imagenet",
    )
    assert resolve_teacher(cfg).class_names == get_class_names("imagenet")
    cfg.teacher.image_size = 192
    with pytest.raises(ConfigError, match="teacher.image_size=192 .*ResNet50_Weights.IMAGENET1K_V2.*gives 224"):
        resolve_teacher(cfg)
    cfg = tv_config("torchvision:efficientnet_b3", "EfficientNet_B3_Weights.DEFAULT")
    assert (resolve_teacher(cfg).teacher.image_size, resolve_teacher(cfg).eval_resize) == (300, 320)


def test_named_weights_load_through_torchvision_s_builder(torch_hub, monkeypatch):
    """get_model(name, weights=...) reads the (cached) download: by enum name, DEFAULT, the torchvision:
    spec, and for the zoo's tv_resnet18 too; HF_HUB_OFFLINE with nothing cached fails before any network."""
    weights = tvm.ResNet18_Weights.IMAGENET1K_V1
    model = randomise_bn(tvm.resnet18())
    cached(torch_hub, weights, model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec in ("ResNet18_Weights.IMAGENET1K_V1", "ResNet18_Weights.DEFAULT", "torchvision:resnet18.IMAGENET1K_V1"):
        teacher = build_teacher("torchvision:resnet18", spec, 1000, 3)
        assert isinstance(teacher, tvm.ResNet) and not teacher.training
        assert not any(p.requires_grad for p in teacher.parameters())
        torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)
    zoo = build_teacher("tv_resnet18", "ResNet18_Weights.IMAGENET1K_V1", 1000, 3)
    torch.testing.assert_close(outputs(zoo), outputs(model), rtol=0, atol=0)
    with pytest.raises(
        TeacherLoadError,
        match="HF_HUB_OFFLINE is set.*resnet34-b627a593.pth is not cached.*pass its local path as teacher.weights",
    ):
        build_teacher("torchvision:resnet34", "ResNet34_Weights.IMAGENET1K_V1", 1000, 3)


def test_local_weights_file(torch_hub, tmp_path):
    """A local file: named as torchvision's download, it brings that weights' settings; another name
    the config's own; keys are checked as for every teacher."""
    model = randomise_bn(tvm.resnet18(num_classes=10))
    mine = tmp_path / "my_resnet18.safetensors"
    save_model(model, mine)
    teacher = build_teacher("torchvision:resnet18", mine, 10, 3)
    torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)
    cfg = tv_config(
        "torchvision:resnet18",
        str(mine),
        class_names="cifar10",
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        in_channels=3,
        image_size=32,
    )
    assert resolve_teacher(cfg).teacher == cfg.teacher  # the config's own settings
    named = tmp_path / tvm.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    torch.save(randomise_bn(tvm.resnet18()).state_dict(), named)
    resolved = resolve_teacher(tv_config("torchvision:resnet18", str(named)))
    assert resolved.teacher.image_size == 224 and resolved.eval_resize == 256 and len(resolved.class_names) == 1000
    with pytest.raises(TeacherLoadError, match=r"does not fit torchvision:resnet34: missing keys \[layer1.2"):
        build_teacher("torchvision:resnet34", named, 1000, 3)


def test_torchvision_errors_come_before_any_download(torch_hub):
    with pytest.raises(TeacherLoadError, match="torchvision has no classification model 'resnet51'"):
        build_teacher("torchvision:resnet51", None, 10, 3, require_weights=False)
    with pytest.raises(
        TeacherLoadError, match="are weights of torchvision's resnet50: set teacher.arch=torchvision:resnet50"
    ):
        build_teacher("torchvision:resnet18", "ResNet50_Weights.IMAGENET1K_V2", 1000, 3)
    with pytest.raises(TeacherLoadError, match="ResNet18_Weights has ResNet18_Weights.IMAGENET1K_V1"):
        build_teacher("torchvision:resnet18", "ResNet18_Weights.IMAGENET1K_V9", 1000, 3)
    with pytest.raises(TeacherLoadError, match="1000 classes, 3 input channels.*num_classes=10"):
        build_teacher("torchvision:resnet18", "ResNet18_Weights.IMAGENET1K_V1", 10, 3)
    with pytest.raises(TeacherLoadError, match="take 3-channel input, not in_channels=1"):
        build_teacher("torchvision:resnet18", None, 10, 1, require_weights=False)
    with pytest.raises(TeacherLoadError, match="has no BatchNorm"):  # ViT: refused on the meta device
        build_teacher("torchvision:vit_b_16", "ViT_B_16_Weights.IMAGENET1K_V1", 1000, 3)
    with pytest.raises(TeacherLoadError, match="does not exist"):
        build_teacher("torchvision:resnet18", "/nonexistent/r18.pth", 1000, 3)
    with pytest.raises(TeacherLoadError, match="teacher.weights is empty"):
        build_teacher("torchvision:resnet18", None, 1000, 3)
    with pytest.raises(ConfigError, match="Fashion-MNIST ResNet-20.*ResNet18_Weights.DEFAULT"):
        resolve_teacher(tv_config("torchvision:resnet18", DEMO_TEACHER))
    with pytest.raises(ConfigError, match="id2label with teacher.arch=torchvision:resnet18 needs weights"):
        resolve_teacher(
            tv_config(
                "torchvision:resnet18", "", class_names="id2label", mean=(0.5,) * 3, std=(0.5,) * 3, in_channels=3
            )
        )


def test_import_path_to_a_kwargs_factory():
    """teacher.arch=torchvision.models:resnet18 (a **kwargs factory) is not handed in_channels."""
    torch.manual_seed(0)
    teacher = build_teacher("torchvision.models:resnet18", None, 7, 3, require_weights=False)
    assert isinstance(teacher, tvm.ResNet) and teacher.fc.out_features == 7
    assert resolve_architecture("torchvision.models:resnet101")(num_classes=5, in_channels=3).fc.out_features == 5


# ---- timm --------------------------------------------------------------------------------------


def test_timm_name_settings_from_pretrained_cfg():
    resolved = resolve_teacher(tv_config("timm:resnet50.a1_in1k", ""))
    t = resolved.teacher
    assert (t.mean, t.std, t.in_channels, t.image_size) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, 224)
    assert resolved.eval_resize == math.floor(224 / 0.95) and t.class_names == "imagenet"
    assert resolved.class_names == get_class_names("imagenet")
    assert resolve_teacher(tv_config("timm:efficientnet_b0.ra_in1k", "")).teacher.image_size == 224
    # a fine-tuned file: the config's own values win over the pretrained_cfg's
    cfg = tv_config("timm:resnet50.a1_in1k", "", image_size=32, class_names="cifar10")
    resolved = resolve_teacher(cfg)
    assert (resolved.teacher.image_size, resolved.eval_resize, resolved.class_names[0]) == (32, 0, "airplane")
    with pytest.raises(TeacherLoadError, match="timm has no model 'resnet51'"):
        resolve_teacher(tv_config("timm:resnet51", ""))
    with pytest.raises(ConfigError, match="Fashion-MNIST ResNet-20"):
        resolve_teacher(tv_config("timm:resnet18", DEMO_TEACHER))


def test_timm_name_with_a_local_weights_file(tmp_path):
    model = randomise_bn(timm.create_model("resnet18", pretrained=False, num_classes=10))
    path = tmp_path / "r18.safetensors"
    save_model(model, path)
    teacher = build_teacher("timm:resnet18.a1_in1k", path, 10, 3)
    assert type(teacher) is type(model)
    torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)
    with pytest.raises(TeacherLoadError, match="does not fit timm:resnet34"):
        build_teacher("timm:resnet34", path, 10, 3)
    with pytest.raises(TeacherLoadError, match="no BatchNorm"):
        build_teacher("timm:vit_tiny_patch16_224", None, 10, 3, require_weights=False)


def test_timm_repository_with_and_without_timm_agree(tmp_path, monkeypatch):
    """A folder written by timm's save_for_hf (config.json + model.safetensors): loaded with timm, and
    with timm blocked through the zoo's tv_resnet18, the outputs are the same."""
    model = randomise_bn(timm.create_model("resnet18.a1_in1k", pretrained=False, num_classes=10))
    folder = tmp_path / "resnet18"
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    assert (folder / "model.safetensors").is_file()
    with_timm = build_teacher(f"hf:{folder}", None, 10, 3)
    assert type(with_timm) is type(model)
    torch.testing.assert_close(outputs(with_timm), outputs(model), rtol=0, atol=0)
    spec = read_hf_model_spec(str(folder))
    assert (spec.kind, spec.image_size, spec.eval_resize, spec.mean) == ("timm", 224, 235, (0.485, 0.456, 0.406))
    monkeypatch.setitem(sys.modules, "timm", None)
    without, _ = load_model_folder(f"hf:{folder}")
    assert type(without) is type(build_model("tv_resnet18", 10))
    torch.testing.assert_close(outputs(without), outputs(model), rtol=1e-5, atol=1e-5)


def test_timm_repository_of_other_architectures(tmp_path):
    """A non-ResNet timm repository loads with timm; one without BatchNorm is refused from its config."""
    model = randomise_bn(timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10))
    folder = tmp_path / "mnv3"
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    torch.testing.assert_close(outputs(build_teacher(f"hf:{folder}", None, 10, 3)), outputs(model), rtol=0, atol=0)
    convnext = tmp_path / "convnext"
    timm.models.save_for_hf(
        timm.create_model("convnext_atto", pretrained=False, num_classes=10), str(convnext), safe_serialization=True
    )
    with pytest.raises(TeacherLoadError, match="has no BatchNorm layer.*LayerNorm"):
        read_hf_model_spec(str(convnext))


@pytest.mark.parametrize("arch,in_channels,side", [("tv_resnet18", 3, 64), ("tv_resnet50", 1, 32)])
def test_exported_resnet_student_loads_with_timm_and_torchvision(tmp_path, arch, in_channels, side):
    """``nayer-scale export`` writes a student with timm's keys as a timm repository: timm's own loader
    (``local-dir:``, as ``hf-hub:`` after a download) builds it with the same outputs, and so does
    torchvision from its model.safetensors (3 channels)."""
    import json

    from safetensors.torch import load_file

    from nayer_scale.export import export_student
    from nayer_scale.recipes import get_preset
    from nayer_scale.storage import atomic_write_json

    cfg = get_preset("cifar10")
    cfg.teacher.in_channels, cfg.teacher.image_size = in_channels, side
    cfg.teacher.mean, cfg.teacher.std = cfg.teacher.mean[:in_channels], cfg.teacher.std[:in_channels]
    cfg.eval.dataset, cfg.eval.root, cfg.eval.resize = "imagenet", "/unused", side + side // 8
    run = tmp_path / "run"
    run.mkdir()
    atomic_write_json(run / "config.json", {**cfg.to_dict(), "resolved": {}, "sessions": []})
    student = randomise_bn(build_model(arch, 10, in_channels))
    names = get_class_names("cifar10")
    save_model(
        student,
        run / "student.safetensors",
        {
            "arch": arch,
            "num_classes": "10",
            "in_channels": str(in_channels),
            "image_size": str(side),
            "mean": json.dumps(cfg.teacher.mean),
            "std": json.dumps(cfg.teacher.std),
            "class_names": json.dumps(names),
        },
    )
    folder = export_student(run, tmp_path / "student")
    x = torch.randn(2, in_channels, side, side)
    with torch.no_grad():
        expected = student(x)
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert model.pretrained_cfg["label_names"] == names and model.pretrained_cfg["input_size"] == (
        in_channels,
        side,
        side,
    )
    data_config = timm.data.resolve_data_config({}, model=model)
    assert data_config["crop_pct"] * (side + side // 8) == pytest.approx(side, abs=1e-2)
    assert tuple(data_config["mean"]) == tuple(cfg.teacher.mean)
    if in_channels == 3:
        tv = getattr(tvm, arch[len("tv_") :])(num_classes=10)
        tv.load_state_dict(load_file(str(folder / "model.safetensors")))
        with torch.no_grad():
            torch.testing.assert_close(tv.eval()(x), expected, rtol=1e-5, atol=1e-5)


def test_versions_of_the_vision_environment():
    """The pair that imports beside each other (constraints-vision.txt)."""
    assert torch.__version__.startswith("2.14.1") and torchvision.__version__.startswith("0.29.1")
