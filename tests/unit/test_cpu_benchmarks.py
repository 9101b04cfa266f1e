"""The CPU measurement scripts behind the precision defaults and the demo's profile run end to end
at tiny sizes (they measure nothing there; the numbers are in benchmarks/results/).

The runs of this topic (distillations, subprocesses) are in tests/integration/test_cpu_benchmarks_runs.py."""

from __future__ import annotations

import pytest


def test_memory_cap_reuses_a_finished_run_and_refuses_other_settings(tmp_path):
    """benchmarks/memory_cap.py: a finished run with the study's settings is reused (so caps can be
    added later), an unfinished one is resumed, one with other settings is refused before any work;
    the report is the Table-5-shaped table and its plot."""
    import json

    from benchmarks import memory_cap
    from nayer_scale.config import ConfigError
    from nayer_scale.recipes import compose_config

    run = tmp_path / "cap400-fifo"
    run.mkdir()
    study = [f"run.run_dir={run}", "memory.max_images=400", "memory.retirement=fifo", "run.cpu_threads=1"]
    config = compose_config("fashion_mnist", overrides=study).to_dict()
    (run / "config.json").write_text(json.dumps({**config, "resolved": {}, "sessions": []}))
    assert not memory_cap.finished(run, study)  # no summary.json: resumed
    (run / "summary.json").write_text("{}")
    assert memory_cap.finished(run, study)
    assert memory_cap.finished(run, [*study[:3], "run.cpu_threads=2", "eval.every_epochs=100"])  # resumable fields
    with pytest.raises(ConfigError, match="memory.retirement changed from 'fifo' to 'reservoir'"):
        memory_cap.finished(run, [*study[:2], "memory.retirement=reservoir"])
    with pytest.raises(ConfigError, match="run of 10 epochs, this study asks for 12"):
        memory_cap.finished(run, [*study, "run.epochs=12"])

    rows = [
        {
            "max_images": "400",
            "retirement": "fifo",
            "memory_size_end": "400",
            "student_top1": "68.1",
            "teacher_top1": "92.79",
            "overrides": "x=1",
        },
        {
            "max_images": "800",
            "retirement": "reservoir",
            "memory_size_end": "800",
            "student_top1": "70.25",
            "teacher_top1": "92.79",
            "overrides": "x=1",
        },
        {
            "max_images": "all",
            "retirement": "-",
            "memory_size_end": "2200",
            "student_top1": "75.49",
            "teacher_top1": "92.79",
            "overrides": "x=1",
        },
    ]
    md = memory_cap.render_table(rows, "memory_cap_test")
    assert (
        "| 400 | 18% | 68.10 | - |" in md and "| 800 | 36% | - | 70.25 |" in md and "| all | 100% | 75.49 | - |" in md
    )
    assert "One seed per cell (run.seed=0)" in md
    rows.append({**rows[0], "student_top1": "65.9", "seed": "1"})  # a second seed: the mean, each seed
    md = memory_cap.render_table(rows, "memory_cap_test")
    assert "| 400 | 18% | 67.00 (68.10, 65.90) | - |" in md and "Mean over seeds 0, 1" in md
    pytest.importorskip("matplotlib")
    memory_cap.plot(rows, tmp_path / "memory_cap_test.png")
    assert (tmp_path / "memory_cap_test.png").stat().st_size > 1000


def test_report_registry_detects_kinds_and_commands_reproduce(tmp_path):
    """benchmarks.lib.report: every script's renderer is registered once (python -m benchmarks.report
    imports them), a CSV's kind comes from its recorded command (old and new form) or its name, and
    the recorded command of a script of the package is its python -m form."""
    from benchmarks import report as cli
    from benchmarks.lib import report
    from benchmarks.lib.provenance import ROOT, command_line, write_csv

    assert set(cli.load_renderers()) == {
        "ablations",
        "gpu_hours",
        "imagenet_throughput",
        "kernels",
        "memory_cap",
        "precision_cpu",
        "profile_cpu",
        "quantization",
        "weak_scaling",
    }
    assert command_line(["--smoke"], ROOT / "benchmarks" / "gpu_hours.py") == "python -m benchmarks.gpu_hours --smoke"
    assert command_line([], ROOT / "benchmarks" / "gpu_suite" / "__main__.py") == "python -m benchmarks.gpu_suite"
    assert command_line(["a b"], ROOT / "launch" / "distill.py") == "python launch/distill.py 'a b'"
    for command in ("python -m benchmarks.bench_kernels --smoke", "python benchmarks/bench_kernels.py --smoke"):
        assert report.detect_kind(tmp_path / "x.csv", [{"command": command}]) == "kernels"
    assert (
        report.detect_kind(tmp_path / "memory_cap_x.csv", [{"command": "python -m benchmarks.other"}]) == "memory_cap"
    )
    with pytest.raises(ValueError, match="registered twice"):
        report.register("kernels")(lambda rows, name: "")
    path = write_csv(tmp_path / "other.csv", [{"a": 1, "b": "x"}], fields={"command": "python -m benchmarks.other"})
    assert (
        report.render(path) == "# other\n\n| a | b | command |\n|---|---|---|\n| 1 | x | python -m benchmarks.other |\n"
    )


def test_timing_helpers_on_cpu():
    """benchmarks.lib.timing: seconds per call over the repeats, the barrier before and after, no
    peak memory on CPU (the value given for it instead)."""
    import math
    import time

    from benchmarks.lib.timing import peak_gb, reset_peak, timed

    calls, barriers = [], []
    seconds = timed(lambda i: (calls.append(i), time.sleep(0.01)), 3, barrier=lambda: barriers.append(len(calls)))
    assert calls == [0, 1, 2] and barriers == [0, 3] and 0.01 <= seconds < 0.5
    with pytest.raises(ValueError, match="repeats"):
        timed(lambda i: None, 0)
    reset_peak()
    assert peak_gb() is None and math.isnan(peak_gb(missing=float("nan")))


def test_repeat_stats_and_spread():
    """benchmarks.lib.timing: the host-inclusive seconds of each call with median, min and max (the
    GPU suite's timed numbers), and the spread of any samples."""
    import time

    from benchmarks.lib.timing import repeat_stats, spread

    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert spread([4.0, 1.0, 2.0, 3.0])["median"] == 2.5
    calls = []
    stats = repeat_stats(lambda i: (calls.append(i), time.sleep(0.01 * (i + 1))), 3)
    assert calls == [0, 1, 2] and stats["repeats"] == 3 and len(stats["samples_s"]) == 3
    assert 0.01 <= stats["min_s"] < stats["median_s"] < stats["max_s"] < 0.5
    assert stats["median_s"] == sorted(stats["samples_s"])[1]
    with pytest.raises(ValueError, match="repeats"):
        repeat_stats(lambda i: None, 0)
    with pytest.raises(ValueError, match="no samples"):
        spread([])
