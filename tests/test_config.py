"""Config parsing, validation and the errors raised before any work starts."""

import pytest

from nayer_scale.config import PRESETS, ConfigError, apply_overrides, config_from_dict, get_preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip(name):
    cfg = get_preset(name).validate()
    assert config_from_dict(cfg.to_dict()) == cfg


def test_overrides_are_typed():
    cfg = apply_overrides(get_preset("fashion_mnist"), [
        "synthesis.bn_loss_weight=5", "synthesis.generator_betas=0.4,0.99", "run.channels_last=true",
        "teacher.arch=pkg.mod:factory", "run.epochs=7"])
    assert cfg.synthesis.bn_loss_weight == 5.0
    assert cfg.synthesis.generator_betas == (0.4, 0.99)
    assert cfg.run.channels_last == "true" and cfg.run.epochs == 7
    assert cfg.teacher.arch == "pkg.mod:factory"


@pytest.mark.parametrize("item,message", [
    ("epochs=3", "section.key=value"),
    ("nosuch.epochs=3", "unknown config section"),
    ("run.epoch=3", "unknown key"),
    ("run.epochs=three", "takes a int"),
    ("run.resume=maybe", "true/false"),
])
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("fashion_mnist"), [item])


@pytest.mark.parametrize("item,message", [
    ("run.warmup_epochs=30", "warmup_epochs"),
    ("synthesis.bn_momentum=1.0", "bn_momentum"),
    ("teacher.mean=0.1,0.2,0.3", "one value per input channel"),
    ("run.mixed_precision=fp8", "mixed_precision"),
    ("synthesis.batch_size=0", "batch_size"),
])
def test_validation_names_the_field(item, message):
    cfg = apply_overrides(get_preset("fashion_mnist"), [item])
    with pytest.raises(ConfigError, match=message):
        cfg.validate()
