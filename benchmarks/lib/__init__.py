"""The library the benchmark scripts share: ``provenance`` (common arguments, the command that
reproduces a run, device / versions / commit, the CSV writer), ``report`` (markdown table helpers
and the renderer registry) and ``timing`` (device sync, peak memory, seconds per call).
Stdlib only at import time."""
