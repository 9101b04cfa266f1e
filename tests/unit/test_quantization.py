"""Data-free quantization (nayer_scale.quantization): fake quantization against hand-computed
integers, the straight-through gradients, the 8-bit first / last layers, BatchNorm folding, PTQ
calibration statistics, the integer export round trip, a tiny W4A4 run through launch/distill.py
and an exact resume that includes the quantizer state.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_quantization_runs.py."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from nayer_scale.config import ConfigError, apply_overrides
from nayer_scale.models import build_model
from nayer_scale.quantization import (
    ActivationFakeQuantize,
    PercentileObserver,
    QuantConv2d,
    WeightFakeQuantize,
    calibrate,
    export_quantized,
    fold_batchnorm,
    load_quantized,
    parse_quantization,
    quantized_copy,
    quantized_layers,
)
from nayer_scale.recipes import get_preset


def _model(seed: int = 0) -> nn.Module:
    """A random resnet8 (1 channel, 10 classes) with non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = build_model("resnet8", 10, 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_parse_quantization_and_config_errors():
    assert parse_quantization("w4a8").weight_bits == 4 and parse_quantization("w4a8").activation_bits == 8
    assert parse_quantization("none") is None
    with pytest.raises(ValueError, match="w8a8"):
        parse_quantization("w9a9")
    with pytest.raises(ConfigError, match="student.quantization='int4'.*w4a4"):
        apply_overrides(get_preset("fashion_mnist"), ["student.quantization=int4"])
    cfg = get_preset("fashion_mnist")
    cfg.student.quantization.weight_bits = 4
    with pytest.raises(ConfigError, match="set both in 2..8"):
        cfg.validate()
    cfg.student.quantization.activation_bits = 4
    with pytest.raises(ConfigError, match="set student.arch=resnet20"):
        cfg.validate()  # the default student resnet8 is not the teacher's architecture
    cfg.student.arch = "resnet20"
    cfg.validate()


def test_weight_fake_quant_per_channel_hand_computed():
    # 4 bits, symmetric narrow range: q in [-7, 7], s_c = max|W_c| / 7, zero point 0
    w = torch.tensor([[0.7, -0.33, 0.12, 0.04], [2.0, -1.0, 0.5, -3.0], [0.0, 0.0, 0.0, 0.0]])
    fq = WeightFakeQuantize(bits=4)
    out = fq(w)
    scale = torch.tensor([0.1, 3.0 / 7, fq.activation_post_process.eps.item() / 1.0])
    torch.testing.assert_close(fq.scale[:2], scale[:2])
    assert fq.scale[2] > 0 and fq.zero_point.tolist() == [0, 0, 0]
    ints = torch.tensor([[7, -3, 1, 0], [5, -2, 1, -7], [0, 0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(out, ints * fq.scale[:, None])
    # the range follows the current weights (the observer is reset on every call)
    fq(w * 0.5)
    torch.testing.assert_close(fq.scale[:2], scale[:2] * 0.5)
    # 8 bits: q in [-127, 127]
    assert WeightFakeQuantize(bits=8).activation_post_process.quant_max == 127


def test_activation_fake_quant_hand_computed_clamping_zero_point_and_freezing():
    aq = ActivationFakeQuantize(bits=4).eval()  # unsigned [0, 15], affine
    x = torch.tensor([-1.0, 0.31, 2.0, 2.5, -1.5])
    assert torch.equal(aq(x), x)  # never observed: identity (eval mode, nothing observed)
    aq.train()
    aq(torch.tensor([-1.0, 2.0]))  # first observation sets the range: [-1, 2]
    # s = 3 / 15 = 0.2, z = 0 - round(-1 / 0.2) = 5
    torch.testing.assert_close(aq.scale, torch.tensor([0.2]))
    assert aq.zero_point.tolist() == [5]
    aq.eval()
    out = aq(x)  # eval: range frozen even though x reaches -1.5 and 2.5
    # -1 -> q 0; 0.31 -> round(1.55) + 5 = 7 -> 0.4; 2.0 -> 15 -> 2.0; 2.5 -> clamped 15; -1.5 -> clamped 0
    torch.testing.assert_close(out, torch.tensor([-1.0, 0.4, 2.0, 2.0, -1.0]))
    torch.testing.assert_close(aq.range[0], torch.tensor(-1.0))
    aq.train()
    aq(torch.tensor([-2.0, 4.0]))  # training: exponential moving average, constant 0.01
    torch.testing.assert_close(aq.range[1], torch.tensor(2.0 + 0.01 * (4.0 - 2.0)))


def test_straight_through_gradients():
    aq = ActivationFakeQuantize(bits=4).train()
    aq(torch.tensor([0.0, 3.0]))  # range [0, 3]
    x = torch.tensor([-0.5, 0.4, 1.7, 2.9, 3.5], requires_grad=True)
    (aq(x) * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    # d x_q / d x = 1 inside the range, 0 where clamped (upstream gradient not 1)
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 0.0]))

    torch.manual_seed(0)
    conv = QuantConv2d.from_float(_with_qconfig(nn.Conv2d(2, 3, 3)))
    conv.input_fake_quant = ActivationFakeQuantize(bits=8)
    inp = torch.randn(2, 2, 5, 5)
    upstream = torch.randn(2, 3, 3, 3)
    (conv(inp) * upstream).sum().backward()
    w_q = conv.weight_fake_quant(conv.weight.detach())
    w_q.requires_grad_(True)
    inp_q = conv.input_fake_quant.eval()(inp)  # the range observed in the forward above
    (F.conv2d(inp_q, w_q, conv.bias.detach()) * upstream).sum().backward()
    # symmetric per-channel min-max never clamps a weight: the STE passes the gradient unchanged
    torch.testing.assert_close(conv.weight.grad, w_q.grad)


def _with_qconfig(layer: nn.Module) -> nn.Module:
    from torch.ao.quantization.qconfig import QConfig

    layer.qconfig = QConfig(
        activation=ActivationFakeQuantize.with_args(bits=8), weight=WeightFakeQuantize.with_args(bits=4)
    )
    return layer


def test_first_and_last_layer_bit_override():
    model = _model()
    bits = {
        n: (m.weight_fake_quant.bits, m.input_fake_quant.bits)
        for n, m in quantized_layers(quantized_copy(model, parse_quantization("w4a4"))).items()
    }
    assert bits["conv1"] == (8, 8) and bits["fc"] == (8, 8)
    assert {v for k, v in bits.items() if k not in ("conv1", "fc")} == {(4, 4)} and len(bits) == 10  # 9 convs + fc
    plain = quantized_copy(model, parse_quantization("w4a8", keep_ends_8bit=False))
    assert {(m.weight_fake_quant.bits, m.input_fake_quant.bits) for m in quantized_layers(plain).values()} == {(4, 8)}
    assert quantized_layers(plain)["conv1"].weight_fake_quant.quant_min == -7


def test_bn_folding_is_equivalent_and_untraceable_models_keep_bn():
    model = _model()
    folded = _model()
    pairs = fold_batchnorm(folded)
    assert ("conv1", "bn1") in pairs and len(pairs) == 9  # stem, 2 per block, 2 projections
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(_model().train())

    class Branchy(nn.Module):  # data-dependent control flow: fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    with pytest.warns(UserWarning, match="not folded"):
        assert fold_batchnorm(Branchy().eval()) == []


def test_ptq_calibration_statistics():
    model = quantized_copy(_model(), parse_quantization("w4a4"))
    batches = [torch.randn(8, 1, 28, 28) * (i + 1) for i in range(3)]
    ranges = calibrate(model, batches, "minmax")
    first = quantized_layers(model)["conv1"].input_fake_quant  # its input is the image batch itself
    everything = torch.cat([b.reshape(-1) for b in batches])
    assert ranges["conv1.input_fake_quant"] == (everything.min().item(), everything.max().item())
    torch.testing.assert_close(first.scale, (everything.max() - everything.min()).reshape(1) / 255)
    assert all(bool(q.calibrated[0]) for q in (m.input_fake_quant for m in quantized_layers(model).values()))

    ranges = calibrate(model, batches, "percentile", percentile=99.0)
    lo = torch.stack(
        [torch.kthvalue(b.reshape(-1), 1 + b.numel() - (round(0.99 * (b.numel() - 1)) + 1)).values for b in batches]
    ).mean()
    hi = torch.stack([torch.kthvalue(b.reshape(-1), round(0.99 * (b.numel() - 1)) + 1).values for b in batches]).mean()
    torch.testing.assert_close(torch.tensor(ranges["conv1.input_fake_quant"]), torch.stack([lo, hi]))
    # the observer on its own: 0..100 -> the 90th percentile is 90 and the 10th is 10
    obs = PercentileObserver(90.0, dtype=torch.quint8, quant_min=0, quant_max=255)
    obs(torch.arange(101.0))
    obs(torch.arange(101.0) * 3)
    assert obs.min_val.item() == 20.0 and obs.max_val.item() == 180.0
    with pytest.raises(ValueError, match="minmax, percentile"):
        calibrate(model, batches, "mse")


def test_export_round_trip_reproduces_outputs_and_top1(tmp_path):
    model = quantized_copy(_model(), parse_quantization("w4a4"))
    calibrate(model, [torch.randn(16, 1, 28, 28)], "minmax")
    model.train()  # a few "training" forwards move the ranges (EMA) and a weight update moves scales
    with torch.no_grad():
        model(torch.randn(16, 1, 28, 28))
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    path = tmp_path / "q.safetensors"
    meta = export_quantized(
        model,
        path,
        arch="resnet8",
        num_classes=10,
        in_channels=1,
        spec=parse_quantization("w4a4"),
        metadata={"mean": "[0.286]"},
    )
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["quantization"] == "w4a4" and f.metadata()["mean"] == "[0.286]"
        q4, q8 = f.get_tensor("layer1.0.conv1.weight_int"), f.get_tensor("conv1.weight_int")
        assert q4.dtype == torch.int8 and q4.abs().max() <= 7 and q8.abs().max() <= 127 and q8.abs().max() > 7
        assert (
            f.get_tensor("fc.weight_scale").shape == (10,) and f.get_tensor("fc.input_zero_point").dtype == torch.int32
        )
    assert json.loads(meta["layer_bits"])["fc"] == [8, 8]
    loaded, loaded_meta = load_quantized(path)
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert torch.equal(got.argmax(1), expected.argmax(1))  # hence the same top-1 on any labelled set
    with pytest.raises(ValueError, match="format"):
        from safetensors.torch import save_file

        save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        load_quantized(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="never observed"):
        export_quantized(
            quantized_copy(_model(), parse_quantization("w4a4")),
            tmp_path / "x.safetensors",
            arch="resnet8",
            num_classes=10,
            in_channels=1,
            spec=parse_quantization("w4a4"),
        )
