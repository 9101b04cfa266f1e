"""The launch scripts' front (nayer_scale.cli): set-up errors are one line on stderr and exit
code 2, not a traceback, unless --debug or NAYER_DEBUG=1.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_cli_runs.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("preset", ["fashion_mnist", "imagenet_r50"])
def test_distill_help_lists_every_field_with_its_value_and_every_preset(preset):
    from nayer_scale.cli import distill_help
    from nayer_scale.config.reference import field_reference
    from nayer_scale.recipes import PRESETS, get_preset

    text = distill_help("fashion_mnist", [f"preset={preset}"])
    for info in field_reference(get_preset(preset)):
        assert f"  {info.key}={info.default}  [" in text, info.key
        assert info.doc.split()[0] in text
    for name in PRESETS:
        assert f"\n  {name} " in text
    assert "run.epochs=320" in text if preset == "imagenet_r50" else "run.epochs=10" in text


def test_the_python_api_is_importable_from_the_package():
    import nayer_scale
    from nayer_scale import NayerConfig, NayerTrainer, distill, get_preset

    assert isinstance(get_preset("fashion_mnist"), NayerConfig) and callable(distill)
    assert NayerTrainer.__name__ == "NayerTrainer" and set(nayer_scale.__all__) >= {"distill", "get_preset"}
    assert (Path(nayer_scale.__file__).parent / "py.typed").is_file()
