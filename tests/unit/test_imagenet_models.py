"""torchvision-compatible ImageNet models (tv_resnet18/34/50, tv_mobilenet_v2) and hub-backed teacher
weights. Nothing is downloaded: torch.hub / huggingface_hub are monkeypatched to hand back local files."""

from __future__ import annotations

import urllib.error
from collections import OrderedDict

import huggingface_hub
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nayer_scale.models import build_model, get_classifier
from nayer_scale.models.hub import TORCHVISION_WEIGHTS
from nayer_scale.models.io import TeacherLoadError
from nayer_scale.models.sources import build_teacher, load_hub_weights

pytestmark = pytest.mark.usefixtures("one_thread")

TV = ["tv_resnet18", "tv_resnet34", "tv_resnet50", "tv_mobilenet_v2"]
# torchvision's documented num_params (1000 classes, 3 channels) and state_dict sizes (num_batches_tracked included)
PARAMS = {"tv_resnet18": 11_689_512, "tv_resnet34": 21_797_672, "tv_resnet50": 25_557_032, "tv_mobilenet_v2": 3_504_872}
ENTRIES = {"tv_resnet18": 122, "tv_resnet34": 218, "tv_resnet50": 320, "tv_mobilenet_v2": 314}
FEATURES = {"tv_resnet18": 512, "tv_resnet34": 512, "tv_resnet50": 2048, "tv_mobilenet_v2": 1280}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet_keys(layers: tuple[int, ...], bottleneck: bool) -> list[str]:
    """torchvision.models.resnet*().state_dict() keys, in order, written out from torchvision's code."""
    keys = ["conv1.weight"] + [f"bn1.{b}" for b in BN]
    convs = 3 if bottleneck else 2
    for stage, n in enumerate(layers, 1):
        for i in range(n):
            p = f"layer{stage}.{i}"
            for c in range(1, convs + 1):
                keys += [f"{p}.conv{c}.weight"] + [f"{p}.bn{c}.{b}" for b in BN]
            if i == 0 and (stage > 1 or bottleneck):
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{b}" for b in BN]
    return keys + ["fc.weight", "fc.bias"]


def torchvision_mobilenet_v2_keys() -> list[str]:
    keys = ["features.0.0.weight"] + [f"features.0.1.{b}" for b in BN]
    for i in range(1, 18):
        p = f"features.{i}.conv"
        subs = [] if i == 1 else [0]  # block 1 has expand ratio 1: no 1x1 expansion
        for j in subs + [len(subs)]:
            keys += [f"{p}.{j}.0.weight"] + [f"{p}.{j}.1.{b}" for b in BN]
        j = len(subs) + 1
        keys += [f"{p}.{j}.weight"] + [f"{p}.{j + 1}.{b}" for b in BN]
    return (
        keys
        + ["features.18.0.weight"]
        + [f"features.18.1.{b}" for b in BN]
        + ["classifier.1.weight", "classifier.1.bias"]
    )


EXPECTED_KEYS = {
    "tv_resnet18": lambda: torchvision_resnet_keys((2, 2, 2, 2), False),
    "tv_resnet34": lambda: torchvision_resnet_keys((3, 4, 6, 3), False),
    "tv_resnet50": lambda: torchvision_resnet_keys((3, 4, 6, 3), True),
    "tv_mobilenet_v2": torchvision_mobilenet_v2_keys,
}


def randomised(name: str, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """A model with random BN statistics and affine parameters, so outputs depend on every tensor."""
    torch.manual_seed(0)
    model = build_model(name, num_classes, in_channels)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.1, 0.1)
                m.num_batches_tracked.fill_(11)
    return model.eval()


def outputs(model: nn.Module, in_channels: int = 3, size: int = 64) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model(torch.randn(2, in_channels, size, size))


@pytest.mark.parametrize("name", TV)
def test_params_and_torchvision_keys(name):
    model = build_model(name, 1000, 3)
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert len(state) == ENTRIES[name]
    assert list(state) == EXPECTED_KEYS[name]()
    assert model.training and all(
        v.dtype == (torch.long if k.endswith("num_batches_tracked") else torch.float32) for k, v in state.items()
    )


def test_key_names_and_shapes():
    r50 = build_model("tv_resnet50", 1000).state_dict()
    assert {
        "conv1.weight",
        "bn1.running_mean",
        "bn1.num_batches_tracked",
        "layer1.0.downsample.0.weight",
        "layer4.2.bn3.running_var",
        "fc.weight",
        "fc.bias",
    } <= set(r50)
    assert r50["conv1.weight"].shape == (64, 3, 7, 7)
    assert r50["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert r50["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert r50["fc.weight"].shape == (1000, 2048)
    r18 = build_model("tv_resnet18", 1000).state_dict()
    assert "layer1.0.downsample.0.weight" not in r18 and r18["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    mb = build_model("tv_mobilenet_v2", 1000).state_dict()
    assert mb["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert mb["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # depthwise
    assert mb["features.1.conv.1.weight"].shape == (16, 32, 1, 1)  # linear bottleneck
    assert mb["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)  # expansion 6
    assert mb["features.17.conv.2.weight"].shape == (320, 960, 1, 1)
    assert mb["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert mb["classifier.1.weight"].shape == (1000, 1280)


def test_resnet50_is_v1_5():
    """The stride sits on the 3x3 conv of the first Bottleneck of a stage, as in torchvision."""
    model = build_model("tv_resnet50", 10)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2)


@pytest.mark.parametrize("name", TV)
def test_shapes_features_and_classifier(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        logits2, features = model(x, return_features=True)
    assert logits.shape == (2, 7) and logits.dtype == torch.float32
    assert features.shape == (2, FEATURES[name])
    torch.testing.assert_close(logits, logits2)
    head = get_classifier(model)
    assert isinstance(head, nn.Linear) and head.out_features == 7 and head.in_features == FEATURES[name]
    assert head is (model.classifier[1] if name == "tv_mobilenet_v2" else model.fc)
    with torch.no_grad():
        torch.testing.assert_close(head(features), logits)  # features are the penultimate activations


def test_mobilenet_v2_classifier_layout():
    model = build_model("tv_mobilenet_v2", 10)
    assert isinstance(model.classifier, nn.Sequential) and len(model.classifier) == 2
    assert isinstance(model.classifier[0], nn.Dropout) and model.classifier[0].p == 0.2
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())


@pytest.mark.parametrize("name", ["tv_resnet18", "tv_mobilenet_v2"])
def test_one_input_channel_and_small_inputs(name):
    model = build_model(name, num_classes=10, in_channels=1).eval()
    first = model.conv1 if name == "tv_resnet18" else model.features[0][0]
    assert first.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        assert model(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_torchvision_init():
    torch.manual_seed(0)
    r18, mb = build_model("tv_resnet18", 1000), build_model("tv_mobilenet_v2", 1000)
    for model in (r18, mb):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    # Kaiming normal, fan_out: std = sqrt(2 / (out_channels * k * k))
    assert r18.layer1[0].conv1.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    assert r18.conv1.weight.std().item() == pytest.approx((2 / (64 * 49)) ** 0.5, rel=0.1)
    head = mb.classifier[1]
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.05) and torch.all(head.bias == 0)
    bound = 1 / 512**0.5  # ResNet fc keeps nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert r18.fc.weight.abs().max().item() <= bound and r18.fc.weight.std().item() > 0.5 * bound


def test_safetensors_teacher(tmp_path):
    model = randomised("tv_resnet50")
    path = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    teacher = build_teacher("tv_resnet50", path, 1000, 3, require_weights=True)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["tv_resnet18", "tv_mobilenet_v2"])
def test_torchvision_pth_layout(tmp_path, name):
    """A torchvision .pth is a bare OrderedDict state_dict: it loads strictly and through build_teacher."""
    model = randomised(name)
    path = tmp_path / f"{name}.pth"
    torch.save(OrderedDict(model.state_dict()), path)
    fresh = build_model(name, 1000)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    torch.testing.assert_close(outputs(fresh.eval()), outputs(model), rtol=0, atol=0)
    torch.testing.assert_close(outputs(build_teacher(name, path, 1000)), outputs(model), rtol=0, atol=0)


def test_class_count_mismatch(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(build_model("tv_resnet18", 1000).state_dict(), path)
    with pytest.raises(TeacherLoadError, match=r"fc.weight: file \(1000, 512\) vs model \(10, 512\).*class count"):
        build_teacher("tv_resnet18", path, 10)


# ---- hub-backed weights (monkeypatched: nothing is downloaded) ----


@pytest.fixture
def fake_torch_hub(monkeypatch, tmp_path):
    """Replace torch.hub.load_state_dict_from_url; returns (calls, set_state)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls, box = [], {}

    def fake(
        url, model_dir=None, map_location=None, progress=True, check_hash=False, file_name=None, weights_only=False
    ):
        calls.append({"url": url, "check_hash": check_hash, "weights_only": weights_only, "map_location": map_location})
        return box["state"]

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake)
    return calls, lambda state: box.__setitem__("state", state)


EXPECTED_URLS = {
    "torchvision:resnet18.IMAGENET1K_V1": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "torchvision:resnet34.IMAGENET1K_V1": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "torchvision:resnet50.IMAGENET1K_V1": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "torchvision:resnet50.IMAGENET1K_V2": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "torchvision:mobilenet_v2.IMAGENET1K_V1": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    "torchvision:mobilenet_v2.IMAGENET1K_V2": "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth",
    "torchvision:resnet50.DEFAULT": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "torchvision:resnet18.DEFAULT": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
}


def test_torchvision_urls(fake_torch_hub):
    calls, set_state = fake_torch_hub
    set_state({"module.w": torch.ones(2)})
    assert len(TORCHVISION_WEIGHTS) == 6
    for spec, url in EXPECTED_URLS.items():
        assert load_hub_weights(spec).keys() == {"w"}  # the same clean-up as files: the DDP prefix is stripped
        assert calls[-1] == {"url": url, "check_hash": True, "weights_only": True, "map_location": "cpu"}


def test_torchvision_hub_teacher(fake_torch_hub):
    calls, set_state = fake_torch_hub
    model = randomised("tv_resnet18")
    set_state(OrderedDict(model.state_dict()))
    teacher = build_teacher("tv_resnet18", "torchvision:resnet18.IMAGENET1K_V1", 1000, 3)
    assert [c["url"] for c in calls] == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)
    # downloaded weights go through the same key checks as a file
    set_state({k: v for k, v in model.state_dict().items() if not k.startswith("layer4.1.")})
    with pytest.raises(
        TeacherLoadError,
        match=r"torchvision:resnet18.IMAGENET1K_V1 does not fit tv_resnet18: "
        r"missing keys \[layer4\.1\.",
    ):
        build_teacher("tv_resnet18", "torchvision:resnet18.IMAGENET1K_V1", 1000, 3)


def test_torchvision_spec_errors_before_download(fake_torch_hub):
    calls, _ = fake_torch_hub
    with pytest.raises(TeacherLoadError, match="unknown torchvision weights.*resnet50.IMAGENET1K_V2"):
        build_teacher("tv_resnet50", "torchvision:resnet50.IMAGENET1K_V3", 1000)
    with pytest.raises(TeacherLoadError, match="weights of torchvision's resnet50: set teacher.arch to tv_resnet50"):
        build_teacher("tv_resnet18", "torchvision:resnet50.IMAGENET1K_V2", 1000)
    with pytest.raises(TeacherLoadError, match="1000 classes, 3 input channels.*num_classes=10"):
        build_teacher("tv_resnet18", "torchvision:resnet18.IMAGENET1K_V1", 10)
    with pytest.raises(TeacherLoadError, match="in_channels=1"):
        build_teacher("tv_resnet18", "torchvision:resnet18.IMAGENET1K_V1", 1000, 1)
    assert calls == []


def test_hf_hub_teacher(monkeypatch, tmp_path):
    """timm's resnet50.tv_in1k: torchvision keys in model.safetensors, without num_batches_tracked."""
    model = randomised("tv_resnet50")
    path = tmp_path / "model.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, str(path)
    )
    calls = []

    def fake(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    teacher = build_teacher("tv_resnet50", "hf-hub:timm/resnet50.tv_in1k", 1000, 3)
    assert calls == [("timm/resnet50.tv_in1k", "model.safetensors")]
    torch.testing.assert_close(outputs(teacher), outputs(model), rtol=0, atol=0)
    load_hub_weights("hf-hub:someone/repo/sub/weights.safetensors")  # the fake returns model.safetensors
    assert calls[-1] == ("someone/repo", "sub/weights.safetensors")
    with pytest.raises(TeacherLoadError, match="hf-hub:<org>/<repo>"):
        build_teacher("tv_resnet50", "hf-hub:resnet50", 1000)


OFFLINE_ADVICE = "on a machine with internet.* and pass its local path as teacher.weights"


def test_offline_torchvision(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(url, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(
        TeacherLoadError,
        match=r"URLError.*download https://download.pytorch.org/models/"
        r"resnet50-11ad3fa6.pth " + OFFLINE_ADVICE,
    ):
        build_teacher("tv_resnet50", "torchvision:resnet50.IMAGENET1K_V2", 1000)
    # HF_HUB_OFFLINE with nothing cached: a clear error without trying the network at all
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def must_not_run(url, **kwargs):
        raise AssertionError("tried to download while offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", must_not_run)
    with pytest.raises(TeacherLoadError, match="HF_HUB_OFFLINE is set.*not cached.*" + OFFLINE_ADVICE):
        load_hub_weights("torchvision:mobilenet_v2.IMAGENET1K_V1")
    # ... but a file already in the torch hub cache is used
    cached = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cached")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kwargs: {"w": torch.zeros(1)})
    assert set(load_hub_weights("torchvision:mobilenet_v2.IMAGENET1K_V1")) == {"w"}


def test_offline_hf_hub(monkeypatch):
    def offline(repo_id, filename, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError(
            "Cannot find the requested files in the disk cache and outgoing traffic has been disabled."
        )

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(
        TeacherLoadError,
        match=r"LocalEntryNotFoundError.*download model.safetensors of "
        r"https://huggingface.co/timm/resnet50.tv_in1k " + OFFLINE_ADVICE,
    ):
        build_teacher("tv_resnet50", "hf-hub:timm/resnet50.tv_in1k", 1000)
