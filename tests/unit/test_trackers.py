"""run.log_with: TensorBoard and trackio (both local, offline) get the per-epoch records, the KD loss
every run.log_every_steps steps and the sample grid; a resumed run continues the same tracker run.

The runs of this topic (distillations, subprocesses) are in tests/integration/test_trackers_runs.py."""

from __future__ import annotations

import pytest

from nayer_scale.config import ConfigError, RunConfig

pytest.importorskip("tensorboard")  # both are in the dev extra: the import audit names them
pytest.importorskip("trackio")


def test_unknown_trackers_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="run.log_with='tensorbord'"):
        RunConfig(log_with="tensorbord").validate()
    RunConfig(log_with="tensorboard, trackio").validate()
