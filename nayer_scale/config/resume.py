"""Which config fields may change between the sessions of one run (``run.resume``).

A resumed run must be the run it continues: every field must equal the checkpoint's, except
infrastructure that does not change what is computed (``RESUMABLE_FIELDS``) and a schedule that only
grows (``EXTENDABLE_FIELDS``). A refused change names both values, before any work.
"""

from __future__ import annotations

import fnmatch
import warnings

from .loader import config_from_dict, flatten
from .validate import ConfigError

__all__ = ["EXTENDABLE_FIELDS", "RESUMABLE_FIELDS", "check_resume_compatible"]

#: Fields (fnmatch patterns) that may change when a run is resumed; every other change is refused.
RESUMABLE_FIELDS: tuple[str, ...] = (
    "eval.*",
    "run.resume",
    "run.progress",
    "run.log_with",
    "run.log_every_steps",
    "run.keep_checkpoints",
    "run.safe_point_every_steps",
    "run.grid_per_class",
    "run.cpu_threads",
    "memory.cache",
    "memory.cache_gb",
    "run.kernels",
    "run.compile",
    "run.compile_backend",
    "run.compile_mode",
    "run.run_dir",
    "memory.prefetch",
    "memory.encoding",
    "memory.webp_quality",
)
#: Fields that may grow (not shrink) when a run is resumed: a longer schedule extends the run.
EXTENDABLE_FIELDS: tuple[str, ...] = ("run.epochs",)


def _normalised(data: dict) -> dict:
    """``data`` (a ``to_dict()``, possibly of an earlier config version) as a flat dict of the current layout."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return dict(flatten(config_from_dict(data).to_dict()))


def check_resume_compatible(saved: dict, now: dict) -> list[str]:
    """Compare a checkpoint's config (``saved``, its ``to_dict()``; earlier layouts are mapped)
    with this session's (``now``) field by field.

    Returns:
        The allowed changes as ``"field: old -> new"`` strings (for the log): fields matching
        ``RESUMABLE_FIELDS``, and ``EXTENDABLE_FIELDS`` that did not go down.
    Raises:
        ConfigError: naming every other changed field with both values.
    """
    old, new = _normalised(saved), _normalised(now)
    allowed, refused = [], []
    for key, value in new.items():
        before = old[key]
        if before == value:
            continue
        if any(fnmatch.fnmatchcase(key, p) for p in RESUMABLE_FIELDS) or (key in EXTENDABLE_FIELDS and value >= before):
            allowed.append(f"{key}: {before!r} -> {value!r}")
        else:
            grow = " (it may only grow)" if key in EXTENDABLE_FIELDS else ""
            refused.append(f"{key} changed from {before!r} to {value!r} since the checkpoint{grow}")
    if refused:
        raise ConfigError(
            "cannot resume: " + "; ".join(refused) + "; put the checkpoint's values back, or start "
            "a new run in another run.run_dir"
        )
    return allowed
