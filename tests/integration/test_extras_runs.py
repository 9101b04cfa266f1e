"""Every optional piece is named when missing: the code path that needs it raises one line with
the exact ``pip install "nayer-scale[...]"`` command (nayer_scale.extras), simulated by hiding the
package from the import system.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_extras.py."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_reports_a_missing_extra_as_one_line(tmp_path):
    """eval.dataset=hf after an install without the hf extra: one line, exit code 2."""
    code = (
        "import sys; sys.modules['datasets'] = None\n"
        "from nayer_scale.cli import run_and_exit\n"
        "sys.argv = ['distill', 'eval.dataset=hf', 'eval.hf_path=/nonexistent', "
        f"'run.run_dir={tmp_path / 'run'}']\n"
        "run_and_exit('fashion_mnist')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and 'pip install "nayer-scale[hf]"' in lines[0] and "Traceback" not in done.stderr
