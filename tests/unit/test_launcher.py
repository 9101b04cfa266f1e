"""accelerate launch's own flags: --mixed_precision decides under run.mixed_precision=auto, a
conflicting explicit value is refused naming both, --dynamo_backend turns run.compile on and is
recorded; and a compiled run after another run in the same process is still compiled (accelerate's
state is kept once per process).

The runs of this topic (distillations, subprocesses) are in tests/integration/test_launcher_runs.py."""

from __future__ import annotations

import pytest

from nayer_scale.config import ConfigError, RunConfig
from nayer_scale.training import LauncherSettings, apply_launcher_settings, launcher_settings


def test_the_launcher_environment_is_read_and_its_defaults_mean_unset():
    assert launcher_settings({}) == LauncherSettings()
    # accelerate launch writes "no" / "NO" when nothing was asked for
    assert (
        launcher_settings(
            {"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_DYNAMO_MODE": "default"}
        )
        == LauncherSettings()
    )
    assert launcher_settings(
        {
            "ACCELERATE_MIXED_PRECISION": "BF16",
            "ACCELERATE_DYNAMO_BACKEND": "INDUCTOR",
            "ACCELERATE_DYNAMO_MODE": "max-autotune",
        }
    ) == LauncherSettings("bf16", "inductor", "max-autotune")


@pytest.mark.parametrize(
    "run_value, launcher, expected",
    [
        ("auto", "fp16", "fp16"),
        ("auto", "bf16", "bf16"),
        ("bf16", "bf16", "bf16"),
        ("no", None, "no"),
        ("auto", None, "auto"),
        ("fp16", None, "fp16"),
    ],
)
def test_launcher_precision_decides_under_auto(run_value, launcher, expected):
    run = RunConfig(mixed_precision=run_value)
    taken = apply_launcher_settings(run, LauncherSettings(mixed_precision=launcher))
    assert run.mixed_precision == expected
    assert bool(taken) == (run_value == "auto" and launcher is not None)


@pytest.mark.parametrize("run_value, launcher", [("bf16", "fp16"), ("no", "bf16"), ("auto", "fp8")])
def test_conflicting_or_unsupported_launcher_precision_is_refused_naming_both(run_value, launcher):
    with pytest.raises(ConfigError) as err:
        apply_launcher_settings(RunConfig(mixed_precision=run_value), LauncherSettings(mixed_precision=launcher))
    assert f"--mixed_precision {launcher}" in str(err.value)
    if launcher != "fp8":
        assert f"run.mixed_precision={run_value}" in str(err.value)


def test_launcher_dynamo_backend_turns_compile_on_and_a_different_run_backend_is_refused():
    run = RunConfig()
    assert apply_launcher_settings(run, LauncherSettings(dynamo_backend="aot_eager", dynamo_mode="max-autotune"))
    assert (run.compile, run.compile_backend, run.compile_mode) == (True, "aot_eager", "max-autotune")
    with pytest.raises(ConfigError, match="run.compile_backend=eager but accelerate launch --dynamo_backend inductor"):
        apply_launcher_settings(
            RunConfig(compile=True, compile_backend="eager"), LauncherSettings(dynamo_backend="inductor")
        )
