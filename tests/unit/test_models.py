"""Model zoo: every model builds for 1-channel 28-px and 3-channel 32-px input, returns logits and
pooled features of the right shapes, has BatchNorm layers and a discoverable classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nayer_scale.models import build_model, get_classifier, list_models, register_model

ZOO = [
    "resnet8",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet18",
    "resnet34",
    "wrn16_1",
    "wrn16_2",
    "wrn40_1",
    "wrn40_2",
    "vgg11_bn",
]
TV_ZOO = ["tv_resnet18", "tv_resnet34", "tv_resnet50", "tv_mobilenet_v2"]  # tested in test_imagenet_models.py
FEATURES = {"resnet18": 512, "resnet34": 512, "vgg11_bn": 512, "wrn16_2": 128, "wrn40_2": 128}  # else 64


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_list_models_is_the_zoo():
    assert sorted(ZOO + TV_ZOO) == list_models()


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("in_channels, size, num_classes", [(1, 28, 10), (3, 32, 100)])
def test_shapes_features_and_bn(name, in_channels, size, num_classes):
    torch.manual_seed(0)
    model = build_model(name, num_classes=num_classes, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        logits = model(x)
        logits2, features = model(x, return_features=True)
    assert logits.shape == (2, num_classes) and logits.dtype == torch.float32
    assert features.shape == (2, FEATURES.get(name, 64))
    torch.testing.assert_close(logits, logits2)
    torch.testing.assert_close(get_classifier(model)(features), logits)  # features are the penultimate layer
    head = get_classifier(model)
    assert isinstance(head, nn.Linear) and head.out_features == num_classes
    assert head is model.classifier
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["resnet8", "wrn16_1", "vgg11_bn", "resnet18"])
@pytest.mark.parametrize("size", [8, 13, 64])
def test_other_input_sizes(name, size):
    model = build_model(name, num_classes=5, in_channels=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


def test_param_counts():
    assert n_params(build_model("resnet8", 10)) == pytest.approx(78_000, rel=0.02)
    assert n_params(build_model("resnet20", 10)) == pytest.approx(272_000, rel=0.02)
    assert n_params(build_model("resnet56", 10)) == pytest.approx(856_000, rel=0.02)
    assert n_params(build_model("wrn40_2", 10)) == pytest.approx(2_244_000, rel=0.02)
    assert n_params(build_model("wrn16_2", 10)) == pytest.approx(692_000, rel=0.02)
    assert n_params(build_model("resnet18", 10)) == pytest.approx(11_174_000, rel=0.02)
    assert n_params(build_model("resnet34", 10)) == pytest.approx(21_282_000, rel=0.02)


def test_published_key_names():
    """Module names follow Fast-Datafree / NAYER, so their checkpoints load without renaming."""

    def keys(name):
        return set(build_model(name, 10).state_dict())

    assert {"conv1.weight", "layer2.0.downsample.0.weight", "fc.weight"} <= keys("resnet20")
    assert {"layer2.0.shortcut.0.weight", "linear.weight"} <= keys("resnet18")
    assert {"block1.layer.0.convShortcut.weight", "block3.layer.5.bn2.running_var", "bn1.weight", "fc.weight"} <= keys(
        "wrn40_2"
    )
    assert {"block0.0.weight", "block2.4.running_mean", "classifier.weight"} <= keys("vgg11_bn")


def test_init_and_modes():
    model = build_model("resnet20", 10)
    assert model.training
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    conv = model.layer1[0].conv1.weight  # kaiming normal, fan_out: std = sqrt(2 / (16 * 9))
    assert conv.std().item() == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.15)


def test_unknown_name_and_bad_sizes():
    with pytest.raises(ValueError, match="resnet20"):
        build_model("resnet21", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet20", 0)


def test_register_model():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet8")(lambda num_classes, in_channels=3: nn.Linear(in_channels, num_classes))


def test_get_classifier_falls_back_to_last_linear():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert get_classifier(model) is model[3]
    with pytest.raises(ValueError, match="no nn.Linear"):
        get_classifier(nn.Conv2d(1, 1, 1))
