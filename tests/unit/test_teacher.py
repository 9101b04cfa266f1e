"""Bring-your-own-teacher loading: round trips, checkpoint wrappers and prefixes, import-path
factories, and a clear TeacherLoadError for each bad input."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from torch import nn

from nayer_scale.models import build_model
from nayer_scale.models.io import TeacherLoadError, load_state_dict_file, read_metadata, save_model
from nayer_scale.models.sources import build_teacher, resolve_architecture

pytestmark = pytest.mark.usefixtures("one_thread")


# Written to a temporary folder put on sys.path, so that import paths work however pytest imports tests.
FACTORIES = textwrap.dedent("""
    import torch.nn as nn
    from nayer_scale.models import build_model

    def with_channels(num_classes, in_channels=3):
        return build_model("resnet8", num_classes, in_channels)

    def classes_only(num_classes):
        return build_model("resnet8", num_classes, 3)

    def no_bn(num_classes, in_channels=3):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, num_classes))

    def fixed_100_classes(num_classes, in_channels=3):
        return build_model("resnet8", 100, in_channels)

    def broken(num_classes, in_channels=3):
        raise RuntimeError("boom")

    class _TakesNoChannels(nn.Module):  # as torchvision's ResNet: no in_channels parameter
        def __init__(self, num_classes=1000):
            super().__init__()
            self.body = build_model("resnet8", num_classes, 3)

        def forward(self, x):
            return self.body(x)

    def kwargs_factory(*, weights=None, progress=True, **kwargs):  # torchvision.models.resnet101's signature
        assert weights is None
        return _TakesNoChannels(**kwargs)

    def keyword_channels(*, num_classes, in_channels):
        return build_model("resnet8", num_classes, in_channels)

    not_callable = 3
""")


@pytest.fixture
def factories(tmp_path, monkeypatch) -> str:
    """Module name of a module of teacher factories, importable for this test."""
    (tmp_path / "my_teacher_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_teacher_factories", raising=False)  # restored (removed) after the test
    return "my_teacher_factories"


def randomised(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A zoo model with random BN running statistics, so eval-mode outputs depend on every buffer."""
    torch.manual_seed(0)
    model = build_model(name, num_classes, in_channels)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def outputs(model: nn.Module, in_channels: int = 3, size: int = 32) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model(torch.randn(3, in_channels, size, size))


def test_safetensors_round_trip_with_metadata(tmp_path):
    model = randomised("resnet20", in_channels=1)
    path = tmp_path / "t.safetensors"
    meta = {"arch": "resnet20", "config": json.dumps({"lr": 0.1})}
    save_model(model, path, meta)
    assert read_metadata(path) == meta
    teacher = build_teacher("resnet20", path, num_classes=10, in_channels=1)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    torch.testing.assert_close(outputs(teacher, 1, 28), outputs(model, 1, 28), rtol=0, atol=0)


def test_pth_with_wrapper_and_ddp_prefix(tmp_path):
    model = randomised("wrn16_1")
    path = tmp_path / "ckpt.pth"
    torch.save(
        {
            "epoch": 200,
            "arch": "wrn16_1",
            "best_acc": 0.9,
            "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        },
        path,
    )
    assert read_metadata(path) == {}
    state = load_state_dict_file(path)
    assert set(state) == set(model.state_dict())
    torch.testing.assert_close(outputs(build_teacher("wrn16_1", path, 10)), outputs(model), rtol=0, atol=0)


def test_model_wrapper_compile_prefix_and_old_checkpoints(tmp_path):
    model = randomised("resnet8")
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": state}, tmp_path / "m.pt")
    torch.testing.assert_close(outputs(build_teacher("resnet8", tmp_path / "m.pt", 10)), outputs(model))


def test_missing_file_is_checked_first():
    with pytest.raises(TeacherLoadError, match="does not exist"):
        build_teacher("no_such_arch", "/nonexistent/teacher.safetensors", 10)
    with pytest.raises(TeacherLoadError, match="does not exist"):
        load_state_dict_file("/nonexistent/teacher.pth")
    with pytest.raises(TeacherLoadError, match="weights"):
        build_teacher("resnet8", None, 10)


def test_random_teacher_without_weights_when_allowed():
    teacher = build_teacher("resnet8", None, 10, 1, require_weights=False)
    assert not teacher.training and outputs(teacher, 1, 28).shape == (3, 10)


def test_class_count_mismatch(factories, tmp_path):
    path = tmp_path / "c100.safetensors"
    save_model(build_model("resnet8", 100), path)
    # a factory that ignores num_classes (a teacher built for its own class list)
    with pytest.raises(TeacherLoadError, match="has 100 outputs but 10 class names were given"):
        build_teacher(f"{factories}:fixed_100_classes", path, 10)
    # a zoo model is built with the given class count; a file with another count fails on shapes
    with pytest.raises(TeacherLoadError, match=r"fc.weight: file \(100, 64\) vs model \(10, 64\)"):
        build_teacher("resnet8", path, 10)


def test_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "r20.safetensors"
    save_model(build_model("resnet20", 10), path)
    with pytest.raises(TeacherLoadError, match=r"missing keys \[layer1\.3\..*\(\d+ in all\)"):
        build_teacher("resnet32", path, 10)
    with pytest.raises(TeacherLoadError, match=r"unexpected keys \[layer1\.1\."):
        build_teacher("resnet8", path, 10)


def test_in_channel_mismatch(tmp_path):
    path = tmp_path / "gray.safetensors"
    save_model(build_model("resnet8", 10, in_channels=1), path)
    with pytest.raises(TeacherLoadError, match="conv1.weight.*input channel"):
        build_teacher("resnet8", path, 10, in_channels=3)


def test_import_path_factories(factories, tmp_path):
    model = randomised("resnet8", in_channels=1)
    path = tmp_path / "gray.safetensors"
    save_model(model, path)
    teacher = build_teacher(f"{factories}:with_channels", path, 10, in_channels=1)
    torch.testing.assert_close(outputs(teacher, 1, 28), outputs(model, 1, 28), rtol=0, atol=0)
    assert resolve_architecture(f"{factories}:classes_only")(num_classes=7, in_channels=3).fc.out_features == 7


def test_import_path_factory_gets_in_channels_only_when_it_names_it(factories, tmp_path):
    """A **kwargs factory (torchvision.models:resnet101-style) would pass in_channels on to a constructor
    that refuses it: it is called with num_classes only; a factory naming in_channels gets it."""
    model = build_teacher(f"{factories}:kwargs_factory", None, 7, require_weights=False)
    assert type(model).__name__ == "_TakesNoChannels" and outputs(model).shape == (3, 7)
    path = tmp_path / "k.safetensors"
    save_model(model, path)
    torch.testing.assert_close(outputs(build_teacher(f"{factories}:kwargs_factory", path, 7)), outputs(model))
    gray = build_teacher(f"{factories}:keyword_channels", None, 5, 1, require_weights=False)
    assert gray.conv1.in_channels == 1 and outputs(gray, 1, 28).shape == (3, 5)


def test_import_path_errors(factories, tmp_path):
    with pytest.raises(TeacherLoadError, match="cannot import"):
        resolve_architecture("no_such_module_xyz:make")
    with pytest.raises(TeacherLoadError, match="cannot import"):
        resolve_architecture(f"{factories}:missing")
    with pytest.raises(TeacherLoadError, match="not a callable"):
        resolve_architecture(f"{factories}:not_callable")
    with pytest.raises(TeacherLoadError, match="unknown architecture 'resnet21'.*resnet20"):
        resolve_architecture("resnet21")
    with pytest.raises(TeacherLoadError, match="failed: RuntimeError: boom"):
        build_teacher(f"{factories}:broken", None, 10, require_weights=False)


def test_teacher_without_batchnorm(factories, tmp_path):
    module = __import__(factories)
    path = tmp_path / "nobn.safetensors"
    save_model(module.no_bn(10), path)
    with pytest.raises(TeacherLoadError, match="no BatchNorm"):
        build_teacher(f"{factories}:no_bn", path, 10)


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TeacherLoadError, match="cannot read"):
        load_state_dict_file(tmp_path / "junk.safetensors")
    torch.save(build_model("resnet8", 10), tmp_path / "whole.pth")  # a pickled module, not a state dict
    with pytest.raises(TeacherLoadError, match="state_dict"):
        load_state_dict_file(tmp_path / "whole.pth")
    torch.save({"epoch": 3}, tmp_path / "nothing.pth")
    with pytest.raises(TeacherLoadError, match="does not hold a state dict"):
        load_state_dict_file(tmp_path / "nothing.pth")


def test_save_model_rejects_non_string_metadata(tmp_path):
    with pytest.raises(TypeError, match="json.dumps"):
        save_model(build_model("resnet8", 10), tmp_path / "x.safetensors", {"lr": 0.1})
