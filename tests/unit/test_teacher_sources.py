"""Teacher sources that need neither torchvision nor timm (they run in the main environment, and in the
vision environment with both imports blocked): timm hub repositories (config.json + model.safetensors,
timm's own layout) routed from ``hf:`` and loaded through the zoo's ResNets without timm, their input
settings from ``pretrained_cfg``, the errors of that routing, and the ``vision`` extra named where
torchvision / timm are missing. tests/unit/test_vision_teachers.py tests the real libraries."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nayer_scale.config import ConfigError, NayerConfig, TeacherConfig
from nayer_scale.extras import MissingExtraError
from nayer_scale.lte.classnames import get_class_names
from nayer_scale.models import build_model
from nayer_scale.models.hf import load_model_folder, read_hf_model_spec, resolve_hf_teacher
from nayer_scale.models.imagenet import ImageNetResNet
from nayer_scale.models.io import TeacherLoadError
from nayer_scale.models.sources import build_teacher, resolve_architecture, resolve_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

VISION = 'pip install "nayer-scale\\[vision\\]"'


@pytest.fixture
def no_vision(monkeypatch):
    """torchvision and timm cannot be imported (as in the main environment), whatever is installed."""
    for name in ("timm", "torchvision", "torchvision.models"):
        monkeypatch.setitem(sys.modules, name, None)


def timm_config(
    architecture: str,
    num_classes: int,
    *,
    input_size=(3, 224, 224),
    crop_pct=0.95,
    model_args: dict | None = None,
    **extra,
) -> dict:
    """config.json as timm's push_to_hub / save_for_hf write it (timm 1.0, e.g. timm/resnet50.a1_in1k)."""
    args = {"num_classes": num_classes, "in_chans": input_size[0], "global_pool": "avg"}
    return {
        "architecture": architecture,
        "num_classes": num_classes,
        "num_features": 512,
        "global_pool": "avg",
        "model_args": args if model_args is None else model_args,
        "pretrained_cfg": {
            "tag": "a1_in1k",
            "custom_load": False,
            "input_size": list(input_size),
            "test_input_size": [input_size[0], 288, 288],
            "fixed_input_size": False,
            "interpolation": "bicubic",
            "crop_pct": crop_pct,
            "test_crop_pct": 1.0,
            "crop_mode": "center",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "num_classes": num_classes,
            "pool_size": [7, 7],
            "first_conv": "conv1",
            "classifier": "fc",
            "license": "apache-2.0",
        },
        **extra,
    }


def randomised(name: str, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, num_classes)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def timm_folder(folder: Path, config: dict, model: nn.Module | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    if model is not None:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def outputs(model: nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model(torch.randn(2, 3, 64, 64))


def test_timm_resnet_repository_loads_through_the_zoo_without_timm(tmp_path, no_vision):
    """timm's resnet18 keys are the zoo's tv_resnet18's: the repository loads without timm."""
    model = randomised("tv_resnet18", 10)
    folder = timm_folder(tmp_path / "resnet18.a1", timm_config("resnet18", 10), model)
    teacher = build_teacher(f"hf:{folder}", None, 10, 3)
    assert isinstance(teacher, ImageNetResNet) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)
    loaded, spec = load_model_folder(f"hf:{folder}")
    assert spec.kind == "timm" and spec.model_name == "resnet18" and spec.num_classes == 10
    # timm's older exports: weights as pytorch_model.bin
    (folder / "model.safetensors").rename(folder / "ignored.safetensors")
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    torch.testing.assert_close(outputs(build_teacher(f"hf:{folder}", None, 10, 3)), outputs(model), rtol=0, atol=0)


def test_timm_repository_input_settings_come_from_pretrained_cfg(tmp_path, no_vision):
    """mean / std / input size and timm's eval resize floor(224 / 0.95) = 235; ImageNet's class names for
    1000 classes (recorded as id2label); another class count takes any list of that many names."""
    folder = timm_folder(tmp_path / "r50", timm_config("resnet50", 1000))
    cfg = NayerConfig()
    cfg.teacher.arch = f"hf:{folder}"
    resolved = resolve_hf_teacher(cfg)
    t = resolved.teacher
    assert (t.mean, t.std, t.in_channels, t.image_size) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, 224)
    assert resolved.eval_resize == math.floor(224 / 0.95) == 235
    assert resolved.class_names == get_class_names("imagenet") and t.class_names == "id2label" and t.weights == ""
    assert resolve_teacher(cfg) == resolved  # through the one registry of sources
    cfg.teacher.class_names = "imagenet"
    assert resolve_hf_teacher(cfg).class_names == get_class_names("imagenet")

    names = [f"kind {i}" for i in range(10)]
    ten = timm_folder(tmp_path / "r18", timm_config("resnet18", 10, label_names=names))
    cfg = NayerConfig()
    cfg.teacher.arch = f"hf:{ten}"
    assert resolve_hf_teacher(cfg).class_names == names
    cfg.teacher.class_names = "cifar10"  # any 10 names: timm's are labels, not a list to match
    assert resolve_hf_teacher(cfg).class_names == get_class_names("cifar10")
    cfg.teacher.class_names = "cifar100"
    with pytest.raises(ConfigError, match="gives 100 names.*has 10 classes"):
        resolve_hf_teacher(cfg)
    unnamed = timm_folder(tmp_path / "unnamed", timm_config("resnet18", 10))
    cfg = NayerConfig()
    cfg.teacher.arch = f"hf:{unnamed}"
    with pytest.raises(ConfigError, match="10 classes and no label names in its config.json: set teacher.class_names"):
        resolve_hf_teacher(cfg)
    cfg.teacher.image_size = 192
    with pytest.raises(ConfigError, match="teacher.image_size=192 .*disagrees.*config.json\\) gives 224"):
        resolve_hf_teacher(cfg)


def test_timm_hub_id_is_routed_to_the_timm_loader(monkeypatch, tmp_path, no_vision):
    """hf:timm/resnet18.a1_in1k (once refused: "no model_type"): config.json first, then the weights,
    both from a local folder standing in for the hub."""
    import huggingface_hub

    model = randomised("tv_resnet18", 1000)
    folder = timm_folder(tmp_path / "hub", timm_config("resnet18", 1000), model)
    calls = []

    def one_file(repo, name):
        calls.append(("file", repo, name))
        if not (folder / name).is_file():
            raise huggingface_hub.errors.EntryNotFoundError(f"{name} not in {repo}")
        return str(folder / name)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", one_file)
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo, allow_patterns: calls.append(("snapshot", repo)) or str(folder),
    )
    teacher = build_teacher("hf:timm/resnet18.a1_in1k", None, 1000, 3)
    torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)
    assert calls[0] == ("file", "timm/resnet18.a1_in1k", "config.json") and calls[-1] == (
        "snapshot",
        "timm/resnet18.a1_in1k",
    )


def test_timm_repository_errors(tmp_path, no_vision):
    # an architecture the zoo does not have, or a ResNet with other arguments, needs timm: the extra is named
    effnet = timm_folder(tmp_path / "effnet", timm_config("efficientnet_b0", 1000))
    with pytest.raises(MissingExtraError, match=f"hf:{effnet}.*efficientnet_b0.*{VISION}"):
        read_hf_model_spec(f"hf:{effnet}")
    deep = timm_folder(tmp_path / "deep", timm_config("resnet50", 1000, model_args={"stem_type": "deep"}))
    with pytest.raises(MissingExtraError, match=VISION):
        build_teacher(f"hf:{deep}", None, 1000, 3)
    # neither transformers' nor timm's config.json
    other = timm_folder(tmp_path / "other", {"architectures": ["Something"]})
    with pytest.raises(
        TeacherLoadError, match="no model_type \\(transformers\\) nor architecture \\+ pretrained_cfg \\(timm\\)"
    ):
        read_hf_model_spec(str(other))
    wide = timm_folder(tmp_path / "wide", timm_config("resnet18", 10, input_size=(3, 224, 320)))
    with pytest.raises(TeacherLoadError, match="input_size \\[3, 224, 320\\] is not square"):
        read_hf_model_spec(str(wide))
    empty = timm_folder(tmp_path / "empty", timm_config("resnet18", 10))
    with pytest.raises(TeacherLoadError, match="no model.safetensors or pytorch_model.bin"):
        build_teacher(f"hf:{empty}", None, 10, 3)
    wrong = timm_folder(tmp_path / "wrong", timm_config("resnet18", 10), randomised("tv_resnet34", 10))
    with pytest.raises(TeacherLoadError, match="does not fit resnet18: missing keys.*unexpected keys \\[layer1.2"):
        build_teacher(f"hf:{wrong}", None, 10, 3)
    ok = timm_folder(tmp_path / "ok", timm_config("resnet18", 10), randomised("tv_resnet18", 10))
    with pytest.raises(TeacherLoadError, match="has 10 classes but 5 class names"):
        build_teacher(f"hf:{ok}", None, 5, 3)
    with pytest.raises(TeacherLoadError, match="the weights are the model folder's"):
        build_teacher(f"hf:{ok}", "x.safetensors", 10, 3)


def test_torchvision_and_timm_sources_name_the_vision_extra(tmp_path, no_vision):
    with pytest.raises(MissingExtraError, match=f"teacher.arch=torchvision:resnet101 needs torchvision.*{VISION}"):
        build_teacher("torchvision:resnet101", None, 1000, 3, require_weights=False)
    with pytest.raises(MissingExtraError, match=f"teacher.arch=timm:resnet50.a1_in1k needs timm.*{VISION}"):
        resolve_architecture("timm:resnet50.a1_in1k")
    with pytest.raises(MissingExtraError, match="teacher.weights=ResNet50_Weights.IMAGENET1K_V2 needs torchvision"):
        build_teacher("tv_resnet50", "ResNet50_Weights.IMAGENET1K_V2", 1000, 3)
    cfg = NayerConfig()
    cfg.teacher.arch = "timm:resnet50"
    with pytest.raises(MissingExtraError, match=VISION):
        resolve_teacher(cfg)
    # a file that happens to look like an enum name is a file
    lookalike = tmp_path / "ResNet8_Weights.MINE"
    torch.save(randomised("resnet8", 10).state_dict(), lookalike)
    assert build_teacher("resnet8", lookalike, 10).fc.out_features == 10


def test_id2label_is_the_own_names_of_the_sources_that_have_them():
    for arch in ("hf:some/model", "torchvision:resnet50", "timm:resnet50.a1_in1k"):
        TeacherConfig(arch=arch, class_names="id2label", mean=(0.5,) * 3, std=(0.5,) * 3, in_channels=3).validate()
    with pytest.raises(
        ConfigError, match="teacher.class_names=id2label .*needs teacher.arch=hf:.*torchvision:<name> or timm:<name>"
    ):
        TeacherConfig(arch="tv_resnet50", class_names="id2label").validate()
