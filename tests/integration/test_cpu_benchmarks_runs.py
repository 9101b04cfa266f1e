"""The CPU measurement scripts behind the precision defaults and the demo's profile run end to end
at tiny sizes (they measure nothing there; the numbers are in benchmarks/results/).

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_cpu_benchmarks.py."""

from __future__ import annotations

import csv

import pytest


@pytest.mark.usefixtures("one_thread")
def test_precision_benchmark_writes_a_row_per_condition(tmp_path):
    from benchmarks import precision_cpu

    assert (
        precision_cpu.main(
            ["--smoke", "--steps", "1", "--conditions", "fp32", "fp32+cl", "--results-dir", str(tmp_path)]
        )
        == 0
    )
    rows = list(csv.DictReader((tmp_path / "precision_cpu.csv").open()))
    assert [r["condition"] for r in rows] == ["fp32", "fp32+cl"]
    assert all(float(r[k]) > 0 for r in rows for k in ("teacher_step_s", "generator_step_s", "student_step_s"))
    assert "bf16" in rows[0]["device"]  # the CPU's bf16 flags are part of every record
    assert (tmp_path / "precision_cpu.md").read_text().count("| fp32") == 2


@pytest.mark.usefixtures("one_thread")
def test_profile_groups_add_up(tmp_path, capsys):
    from benchmarks import profile_cpu

    assert (
        profile_cpu.main(["--smoke", "--generator-steps", "1", "--student-steps", "2", "--results-dir", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "## generator step" in out and "## student step" in out and "convolutions (backward)" in out
    shares = [
        float(line.split("|")[2].strip(" %"))
        for line in out.splitlines()
        if line.startswith("| ") and line.endswith("% |")
    ]
    assert len(shares) == 2 * 9 and abs(sum(shares) - 200) < 0.5  # each step's groups sum to 100%
    assert not (tmp_path / "profile_cpu.md").exists()  # --smoke records nothing
