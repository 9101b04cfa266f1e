"""The documentation: the site builds with ``mkdocs build --strict`` (every nav page exists, every
link inside the site resolves, the generated configuration reference renders), and every relative
link of README.md, the front page, names a file of the repository.

The build needs the docs extra (``pip install -e ".[docs]"``). Without mkdocs the build test skips,
unless NAYER_DOCS_TESTS=required, which turns the missing import into a failure.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_docs.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.docs import _mkdocs_config, _nav_pages

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("NAYER_DOCS_TESTS") == "required":
            pytest.fail('mkdocs is not importable and NAYER_DOCS_TESTS=required: pip install -e ".[docs]"')
        pytest.skip("mkdocs is not installed (the docs extra); NAYER_DOCS_TESTS=required makes this a failure")
    site = tmp_path / "site"
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for page in _nav_pages(_mkdocs_config()["nav"]):
        html = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert html.is_file(), f"{page} was not built ({html})"
    reference = (site / "reference" / "config" / "index.html").read_text()
    assert "synthesis.bn_momentum" in reference  # the generated page holds the config fields
