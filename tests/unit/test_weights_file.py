"""Weights files that are not a state dict are named for what they are (nayer_scale.models.weights_file)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from nayer_scale.models.weights_file import describe_weights_file


def _good(tmp_path):
    state = {"w": torch.randn(64, 64)}
    torch.save(state, tmp_path / "good.pth")
    save_file(state, str(tmp_path / "good.safetensors"))
    return tmp_path / "good.pth", tmp_path / "good.safetensors"


def test_sound_files_are_not_described(tmp_path):
    pth, st = _good(tmp_path)
    assert describe_weights_file(pth) is None and describe_weights_file(st) is None


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda p, pth, st: p.write_bytes(b""), "is empty"),
        (
            lambda p, pth, st: p.write_text("<!DOCTYPE html>\n<html><body>404 Not Found</body></html>"),
            "is an HTML page",
        ),
        (lambda p, pth, st: p.write_text("  <html><head><title>Sign in</title>"), "is an HTML page"),
        (lambda p, pth, st: p.write_text('{"error": "quota"}'), "is a text file"),
        (lambda p, pth, st: p.write_bytes(bytes(range(7, 200)) * 3), "match no known format"),
        (lambda p, pth, st: p.write_bytes(pth.read_bytes()[:900]), "damaged or truncated torch.save archive"),
        (lambda p, pth, st: p.write_bytes(st.read_bytes()[:200]), "truncated safetensors file"),
        (lambda p, pth, st: p.write_bytes(st.read_bytes()[:6]), "fewer than a safetensors header"),
    ],
    ids=["empty", "html-404", "html-login", "json-text", "random", "truncated-zip", "truncated-safetensors", "tiny"],
)
def test_broken_files_say_what_they_are(tmp_path, make, expected):
    pth, st = _good(tmp_path)
    bad = tmp_path / ("x.safetensors" if "safetensors" in expected else "x.pth")
    make(bad, pth, st)
    described = describe_weights_file(bad)
    assert described is not None and expected in described and "\n" not in described


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "it is an HTML page"),
        (bytes(range(256)) * 4, "match no known format"),
    ],
)
def test_a_teacher_file_that_is_not_a_state_dict_is_named_without_the_loaders_text(tmp_path, content, expected):
    from nayer_scale.models.io import TeacherLoadError, load_state_dict_file

    bad = tmp_path / "x.pth"
    bad.write_bytes(content)
    with pytest.raises(TeacherLoadError) as err:
        load_state_dict_file(bad)
    message = str(err.value)
    assert expected in message and "weights_only" not in message.replace("weights_only=True", "")
    assert "WeightsUnpickler" not in message and len(message) < 400 and err.value.__cause__ is None


def test_a_truncated_safetensors_teacher_is_named(tmp_path):
    from nayer_scale.models.io import TeacherLoadError, load_state_dict_file

    _, st = _good(tmp_path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(TeacherLoadError, match="it is a truncated safetensors file"):
        load_state_dict_file(cut)
