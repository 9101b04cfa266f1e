"""Fault injection into the writers of a run (tests/integration/test_fault_injection_runs.py), and its worker.

``inject_fault`` makes the ``nth`` write of a file whose path matches ``pattern`` (fnmatch, on the
path as opened: for an atomic write that is its ``<name>.<pid>.<random>.tmp`` file) stop half way:
half of the bytes reach the disk, then either ``OSError(ENOSPC)`` is raised (``"enospc"``: a full
disk) or the process is SIGKILLed (``"kill"``: no clean-up, no ``finally``). Python-level writes
are caught at ``open`` (``builtins.open`` and ``io.open``, which ``pathlib`` calls); safetensors'
``save_file`` (written by Rust, out of Python's reach) at the modules that call it, by cutting the
finished file to half its size.

As a script (the kill case, in a process of its own):
    python tests/fault_worker.py PATTERN NTH section.key=value ...
runs ``nayer-scale distill section.key=value ...`` and SIGKILLs itself in the middle of that write;
it exits 3 if the write never happened.
"""

from __future__ import annotations

import builtins
import errno
import fnmatch
import io
import os
import signal
import sys


def inject_fault(monkeypatch, pattern: str, nth: int, action: str) -> dict:
    """Install the fault (see the module docstring) with ``monkeypatch`` (a pytest MonkeyPatch).
    Returns ``{"n": matching writes so far}``."""
    assert action in ("enospc", "kill"), action
    import safetensors.torch

    import nayer_scale.models.io
    import nayer_scale.quantization.export

    seen = {"n": 0}

    def hit(path) -> bool:
        if not fnmatch.fnmatch(os.fspath(path), pattern):
            return False
        seen["n"] += 1
        return seen["n"] == nth

    def fail() -> None:
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_open = builtins.open

    def fault_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(m in mode for m in "wax") and hit(file):
            write = f.write

            def half_then_fail(data):
                write(data[: max(1, len(data) // 2)])
                f.flush()
                os.fsync(f.fileno())
                fail()

            f.write = half_then_fail
        return f

    real_save_file = safetensors.torch.save_file

    def fault_save_file(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        if hit(filename):
            os.truncate(filename, os.path.getsize(filename) // 2)
            fail()

    monkeypatch.setattr(builtins, "open", fault_open)
    monkeypatch.setattr(io, "open", fault_open)
    for module in (nayer_scale.models.io, nayer_scale.quantization.export):
        monkeypatch.setattr(module, "save_file", fault_save_file)
    return seen


if __name__ == "__main__":
    import pytest

    from nayer_scale.cli import main

    with pytest.MonkeyPatch.context() as mp:
        inject_fault(mp, sys.argv[1], int(sys.argv[2]), "kill")
        main(argv=["distill", *sys.argv[3:]])
    sys.exit(3)  # never killed: the write did not happen
