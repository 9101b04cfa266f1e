"""Shared fixtures: a tiny fake Fashion-MNIST *test* split, a random-weight teacher file and a tiny
NAYER config that runs in seconds on CPU. No network: the text encoder is the locally installed
all-MiniLM-L6-v2 package.

Triton kernels (fixture ``triton_kernels``): a test that launches them requests the fixture. With a
CUDA device they run compiled and the fixture only skips when triton is missing. Without one they run
in Triton's CPU interpreter, scoped as narrowly as triton 3.7 allows:
  - triton decides interpreted-or-compiled per ``@triton.jit`` function when it is *decorated*,
    reading TRITON_INTERPRET then; triton's own jit helpers (``tl.sum``, ``tl.randn``, ...) are
    decorated when triton is first imported, ours when their module is first imported;
  - an interpreted kernel calling a compiled helper fails ("Cannot call @triton.jit'd outside of the
    scope of a kernel"), so triton must be first imported with the variable set;
  - a launch reads the variable again (its first launch imports more of triton, which asserts the
    interpreter mode), so it must still be set whenever an interpreted kernel is launched.
So, when the collected tests request ``triton_kernels`` on a CPU machine, ``pytest_collection_modifyitems``
imports triton once with TRITON_INTERPRET=1 and removes the variable again (a later ``import triton`` by
torch.compile cannot then fix the helpers as compiled), and the fixture sets TRITON_INTERPRET=1 for
the duration of each kernel test only (our kernel modules are first imported inside those tests, so
they are decorated as interpreted). Other tests of the process, and the subprocesses they start, never
see the variable. If triton was imported without the interpreter before collection ended (a plugin),
the kernel tests are skipped, and tests/integration/test_kernels_runs.py re-runs tests/unit/test_kernels.py
in a subprocess instead.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

from nayer_scale.config import apply_overrides  # noqa: E402
from nayer_scale.recipes import get_preset  # noqa: E402

TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
TRITON_INTERPRET = "TRITON_INTERPRET"


def triton_kernels_run_here() -> bool:
    """Whether this process can launch the Triton kernels: triton is installed, and there is a CUDA
    device, or triton is not imported yet, or it was imported in interpreter mode."""
    if not TRITON_INSTALLED:
        return False
    if torch.cuda.is_available() or "triton" not in sys.modules:
        return True
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.sum, InterpretedFunction)


INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_itemcollected(item):
    """Every test under tests/integration/ (a distillation run, a benchmark script, subprocesses) is
    marked ``slow``, so ``-m "not slow"`` selects tests/unit/ alone. Runs as each test is collected,
    before -m / -k deselection."""
    if INTEGRATION in Path(item.path).resolve().parents:
        item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(config, items):
    """CPU machine: import triton once in interpreter mode when a selected test launches kernels."""
    wanted = any("triton_kernels" in getattr(item, "fixturenames", ()) for item in items)
    if not wanted or not TRITON_INSTALLED or torch.cuda.is_available() or "triton" in sys.modules:
        return
    before = os.environ.get(TRITON_INTERPRET)
    os.environ[TRITON_INTERPRET] = "1"
    try:
        import triton.language  # noqa: F401  (triton's own jit helpers: decorated as interpreted)
    finally:
        if before is None:
            del os.environ[TRITON_INTERPRET]
        else:
            os.environ[TRITON_INTERPRET] = before


@pytest.fixture
def triton_kernels(monkeypatch) -> str:
    """Lets one test launch the Triton kernels: "cuda" (compiled; nothing set) or "interpreter"
    (CPU: TRITON_INTERPRET=1 for this test only). Skips when triton is missing or was imported
    without the interpreter (see the module docstring)."""
    if not TRITON_INSTALLED:
        pytest.skip("triton is not installed")
    if torch.cuda.is_available():
        return "cuda"
    if not triton_kernels_run_here():
        pytest.skip("triton was imported without TRITON_INTERPRET in this process (see tests/conftest.py)")
    monkeypatch.setenv(TRITON_INTERPRET, "1")
    return "interpreter"


def write_idx_split(folder: Path, split: str, n: int, seed: int = 0) -> None:
    """Write gzipped IDX files of ``n`` random 28x28 images and labels (Fashion-MNIST layout)."""
    rng = np.random.default_rng(seed)
    prefix = "t10k" if split == "test" else "train"
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\0" * 16 + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\0" * 8 + labels.tobytes())


@pytest.fixture(scope="module")
def one_thread():
    """Small convolutions run fastest on one thread, and far slower on two when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fake_test_split(tmp_path_factory) -> Path:
    """A folder holding ONLY a 120-image fake test split (no training files at all)."""
    folder = tmp_path_factory.mktemp("fmnist")
    write_idx_split(folder, "test", 120)
    return folder


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory) -> Path:
    """A random-weight resnet8 teacher (1 channel, 10 classes) saved as safetensors."""
    from nayer_scale.models import build_model
    from nayer_scale.models.io import save_model

    torch.manual_seed(0)
    model = build_model("resnet8", num_classes=10, in_channels=1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_model(model, path)
    return path


@pytest.fixture(scope="session")
def lte_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lte")


def tiny_overrides(teacher: Path, eval_root: Path, lte_cache: Path) -> list[str]:
    """THE tiny run, as ``section.key=value`` overrides (``nayer_scale.config.apply_overrides``, the
    command line's syntax): the fashion_mnist preset on a random resnet8 teacher -> resnet8 student,
    one synthesis batch of 24 per epoch, 2 student steps of 16, fp32, evaluated every epoch. The
    other tiny argument lists below are derived from it."""
    return [
        "teacher.arch=resnet8",
        f"teacher.weights={teacher}",
        "student.arch=resnet8",
        f"lte.cache_dir={lte_cache}",
        f"eval.root={eval_root}",
        "eval.every_epochs=1",
        "synthesis.batch_size=24",
        "synthesis.num_generator_steps=2",
        "synthesis.batches_per_epoch=1",
        "synthesis.warmup_batches_per_epoch=1",
        "synthesis.generator_width=8",
        "synthesis.noise_dim=32",
        "distill.batch_size=16",
        "distill.steps_per_epoch=2",
        "run.warmup_epochs=1",
        "run.mixed_precision=no",
    ]


def merged_overrides(base: list[str], changes: typing.Iterable[str]) -> list[str]:
    """``base`` with each ``section.key=value`` of ``changes`` replacing the item of the same key, or
    appended (one item per key, so a command line never repeats a key)."""
    items = {item.split("=", 1)[0]: item for item in base}
    for item in changes:
        assert "=" in item, f"override {item!r} is not of the form section.key=value"
        items[item.split("=", 1)[0]] = item
    return list(items.values())


def tiny_run_overrides(run_dir: Path, teacher: Path, eval_root: Path, lte_cache: Path, *overrides: str) -> list[str]:
    """``tiny_config``'s run as ``section.key=value`` arguments: ``nayer-scale distill`` (preset
    fashion_mnist) with these runs what ``NayerTrainer(tiny_config(...))`` runs."""
    run = [
        f"run.run_dir={run_dir}",
        "run.epochs=3",
        "synthesis.generator_life_epochs=2",
        "run.progress=false",
        "run.resume=false",
    ]
    return merged_overrides(merged_overrides(tiny_overrides(teacher, eval_root, lte_cache), run), overrides)


def tiny_config(run_dir: Path, teacher: Path, eval_root: Path, lte_cache: Path, *overrides: str):
    """The fashion_mnist preset shrunk to a few seconds of CPU time (``tiny_overrides``, 3 epochs of
    which 1 warm-up, a generator living 2 epochs, no progress bar, no resume), then ``overrides``
    (``section.key=value`` strings, e.g. ``"run.epochs=4"``). Not validated (the trainer does)."""
    return apply_overrides(
        get_preset("fashion_mnist"), tiny_run_overrides(run_dir, teacher, eval_root, lte_cache, *overrides)
    )


@pytest.fixture
def make_cfg(tmp_path, teacher_file, fake_test_split, lte_cache):
    """``make_cfg(name="run", *overrides)``: ``tiny_config`` in ``tmp_path/name`` on the session's
    random teacher, fake test split and LTE cache."""

    def make(name="run", *overrides):
        return tiny_config(tmp_path / name, teacher_file, fake_test_split, lte_cache, *overrides)

    return make


def tiny_set_args(teacher: Path, eval_root: Path, lte_cache: Path) -> list[str]:
    """``--set section.key=value`` arguments of the benchmark scripts that shrink a run the way
    ``tiny_config`` does (``tiny_overrides`` on one CPU thread), for scripts that launch the
    user-facing entry point."""
    overrides = merged_overrides(tiny_overrides(teacher, eval_root, lte_cache), ["run.cpu_threads=1"])
    return [arg for item in overrides for arg in ("--set", item)]


def tiny_cli_args(teacher: Path, eval_root: Path, lte_cache: Path, run_dir: Path) -> list[str]:
    """``section.key=value`` arguments of ``nayer-scale distill`` for a run of about a second per epoch
    (for the tests that start real jobs as a user would): ``tiny_overrides`` with a third of the
    images and steps, the preset's evaluation every other epoch and its ``run.mixed_precision=auto``
    (which follows ``accelerate launch --mixed_precision``), one CPU thread, no progress bar."""
    smaller = [
        "synthesis.batch_size=8",
        "synthesis.num_generator_steps=1",
        "synthesis.noise_dim=16",
        "distill.batch_size=8",
        "distill.steps_per_epoch=1",
        "eval.every_epochs=2",
        "run.mixed_precision=auto",
        "run.cpu_threads=1",
        "run.progress=false",
        f"run.run_dir={run_dir}",
    ]
    return merged_overrides(tiny_overrides(teacher, eval_root, lte_cache), smaller)


def crash_in_epoch(monkeypatch, epoch: int = 2):
    """Make ``NayerTrainer.distill`` raise KeyboardInterrupt when it starts ``epoch`` (epoch 2 of a
    tiny run: that epoch's shard is written, its checkpoint is not). Returns a function that undoes it."""
    from nayer_scale.trainer import NayerTrainer

    real_distill = NayerTrainer.distill

    def crashing_distill(self, progress=None, *args, **kwargs):
        if progress is not None and progress.epoch == epoch:
            raise KeyboardInterrupt(f"simulated kill in epoch {epoch}")
        return real_distill(self, progress, *args, **kwargs)

    monkeypatch.setattr(NayerTrainer, "distill", crashing_distill)
    return lambda: monkeypatch.setattr(NayerTrainer, "distill", real_distill)


@dataclasses.dataclass
class CrashResume:
    """What ``crash_resume`` returns: the uninterrupted run and the crashed-then-resumed one.

    Attributes:
        straight_summary / straight: summary dict and exported student (state dict) of the
            uninterrupted run (``tmp_path/straight``).
        summary / student: the same of the resumed run (``tmp_path/crashed``).
        config: the crashed run's config, ``run.resume=True`` (``config.run.run_dir``).
    """

    straight_summary: dict
    straight: dict
    summary: dict
    student: dict
    config: typing.Any


@pytest.fixture
def crash_resume(tmp_path, teacher_file, fake_test_split, lte_cache, monkeypatch):
    """The scenario "straight run vs crashed run, resumed: the student is bit-identical", written once.

    ``crash_resume(*overrides, crash_epoch=2, crash=None, after_crash=None, before_fit=None)`` runs
    ``tiny_config(..., *overrides)`` uninterrupted, then again killed (KeyboardInterrupt) as
    distillation of ``crash_epoch`` starts (or where ``crash(monkeypatch)`` makes it raise
    KeyboardInterrupt; it returns a function that undoes it), then resumed (``run.resume=True``);
    asserts the resumed student is bit-identical to the uninterrupted one and returns a ``CrashResume``.
    ``after_crash(config)`` runs between the crash and the resume (``config.run.resume`` still
    False), ``before_fit(trainer)`` on the resumed NayerTrainer before its ``fit``.
    """
    from safetensors.torch import load_file

    from nayer_scale.trainer import NayerTrainer

    def run(*overrides: str, crash_epoch: int = 2, crash=None, after_crash=None, before_fit=None) -> CrashResume:
        def make(name):
            return tiny_config(tmp_path / name, teacher_file, fake_test_split, lte_cache, *overrides)

        straight_summary = NayerTrainer(make("straight")).fit()
        straight = load_file(tmp_path / "straight" / "student.safetensors")
        cfg = make("crashed")
        restore = crash_in_epoch(monkeypatch, crash_epoch) if crash is None else crash(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            NayerTrainer(cfg).fit()
        restore()
        if after_crash is not None:
            after_crash(cfg)
        cfg.run.resume = True
        resumed = NayerTrainer(cfg)
        if before_fit is not None:
            before_fit(resumed)
        summary = resumed.fit()
        student = load_file(Path(cfg.run.run_dir) / "student.safetensors")
        assert_bit_identical(student, straight)
        return CrashResume(straight_summary, straight, summary, student, cfg)

    return run


def assert_bit_identical(actual: dict, reference: dict) -> None:
    """Every tensor of the state dict ``reference`` equals ``actual``'s, bit for bit (exact resume)."""
    for key, value in reference.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)
