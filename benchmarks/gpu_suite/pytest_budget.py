"""A pytest plugin of the GPU suite: a per-test time budget without any extra package (no
pytest-timeout on the GPU machine) and without a conftest. Loaded with
``pytest -p benchmarks.gpu_suite.pytest_budget --per-test-budget SECONDS``.

Each test's call phase runs under ``signal.setitimer(ITIMER_REAL)``: when the budget is spent,
SIGALRM raises ``TestBudgetExceeded`` in the test (so it fails with that message) and pytest goes on
with the next test. A test blocked inside C code (a hung kernel) is interrupted only when control
comes back to Python; the step's own process-tree timeout is the backstop. Main thread, POSIX only
(elsewhere, or with a budget of 0, the plugin does nothing)."""

from __future__ import annotations

import signal
import threading

import pytest


class TestBudgetExceeded(Exception):
    """A test ran past the per-test budget of the GPU suite."""

    __test__ = False  # not a test class, whatever its name


def pytest_addoption(parser) -> None:
    """``--per-test-budget SECONDS`` (0 = no budget)."""
    parser.addoption(
        "--per-test-budget",
        type=float,
        default=0.0,
        help="fail a test whose call phase runs longer than this many seconds (GPU suite)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Run the test under an interval timer of ``--per-test-budget`` seconds."""
    budget = item.config.getoption("per_test_budget")
    usable = budget > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expired(signum, frame):
        raise TestBudgetExceeded(f"per-test budget of {budget:g} s spent (GPU suite)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
