"""Triton kernels against their pure-PyTorch references, and the backend dispatch.

On a CPU machine the kernels run in Triton's interpreter on CPU tensors; on a GPU machine they run
compiled on CUDA tensors, and the ``gpu``-marked tests add realistic shapes.

Every test that launches a kernel requests the ``triton_kernels`` fixture of tests/conftest.py
(directly, through ``needs_kernels``, or through the fixtures that hand it the kernel modules): it
sets TRITON_INTERPRET=1 only without a CUDA device and only for that test, and the kernel modules
are imported inside those tests, never at collection (see tests/conftest.py for how triton 3.7
reads the variable). Should triton already have been imported without the interpreter (a plugin),
the kernel tests here are skipped and one test re-runs this file in a subprocess with
TRITON_INTERPRET=1 instead.
The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_kernels.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import triton_kernels_run_here
from helpers.kernels import noisy_triton  # noqa: F401 (a fixture, found by name)
from nayer_kernels import dispatch, reinit_noisy_linears_reference

ON_GPU = torch.cuda.is_available()
HAS_TRITON = importlib.util.find_spec("triton") is not None

needs_kernels = pytest.mark.usefixtures("triton_kernels")


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
def test_import_without_interpreter_or_gpu():
    """A fresh process without TRITON_INTERPRET: importing never fails nor imports triton, the
    reference path works, and the Triton path on CPU tensors says what to do."""
    code = textwrap.dedent(
        """
        import sys, torch
        import nayer_kernels
        assert "triton" not in sys.modules
        x = torch.randn(2, 3, 4, 4)
        nayer_kernels.bn_stats_loss(x, torch.zeros(3), torch.ones(3), backend="auto")
        assert "triton" not in sys.modules
        from nayer_kernels import bn_stats_loss_triton
        try:
            bn_stats_loss_triton(x, torch.zeros(3), torch.ones(3))
        except RuntimeError as e:
            assert "TRITON_INTERPRET" in str(e), e
        else:
            raise AssertionError("expected a RuntimeError")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", dispatch.BACKEND_ENV_VAR)}
    env["CUDA_VISIBLE_DEVICES"] = ""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
def test_kernels_in_interpreter_subprocess():
    if triton_kernels_run_here():
        pytest.skip("the kernel tests ran in this process")
    env = dict(os.environ, TRITON_INTERPRET="1")
    kernel_tests = Path(__file__).parents[1] / "unit" / "test_kernels.py"  # the kernel tests of this process
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not gpu", str(kernel_tests)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


# --------------------------------------------------------------------------------------------------
# GPU: realistic shapes (skipped on CPU machines)
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# End to end: a tiny NAYER run with the kernels and with the references
# --------------------------------------------------------------------------------------------------


@needs_kernels
def test_end_to_end_kernels_match_references(
    tmp_path, teacher_file, fake_test_split, lte_cache, monkeypatch, capsys, noisy_triton
):
    """The same tiny run with run.kernels=triton (interpreter on CPU) and =reference gives the same
    synthesis and KD losses. The two re-init RNGs (Philox in Triton, torch's generator in the
    reference) draw different numbers by design, so here the Triton re-init is given the
    reference's draw for the same seed; its own statistics are tested above. Every BN-statistics
    loss of the run goes through the fused kernel, forward and backward."""
    import json

    from conftest import tiny_config
    from nayer_scale.trainer import NayerTrainer

    def same_draw(weight, bias, init, seed):
        reinit_noisy_linears_reference(weight, bias, init, torch.Generator(device=weight.device).manual_seed(seed))

    monkeypatch.setattr(noisy_triton, "reinit_noisy_linears_triton", same_draw)
    monkeypatch.delenv("NAYER_KERNELS", raising=False)
    records = {}
    for backend in ("reference", "triton"):
        # one epoch without warm-up: a synthesis batch with the adversarial term, student steps and
        # the held-out batch (the interpreter runs every kernel program on the CPU: each synthesis
        # batch costs tens of seconds; a warm-up batch is the same kernels without the adversarial term)
        cfg = tiny_config(
            tmp_path / backend, teacher_file, fake_test_split, lte_cache, "run.epochs=1", "run.warmup_epochs=0"
        )
        cfg.run.kernels = backend
        trainer = NayerTrainer(cfg)
        assert trainer.kernel_backend == backend
        assert f"kernels (BN-statistics loss, noisy-layer re-init): {backend}" in capsys.readouterr().out
        trainer.fit()
        records[backend] = [json.loads(x) for x in open(tmp_path / backend / "metrics.jsonl")]
    for ref, ker in zip(records["reference"], records["triton"]):
        for key in ("synth_loss", "synth_bn", "synth_ce", "kd"):
            if key in ref:
                assert ker[key] == pytest.approx(ref[key], rel=1e-3, abs=1e-4), (ref["epoch"], key)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
def test_gpu_rng_matches_interpreter(tmp_path, noisy_triton):
    """Does tl.randn/tl.rand on the GPU give the interpreter's numbers (CPU runs reproducing GPU
    runs)? Bit equality is not required (fast-math log/cos may differ in the last bits)."""
    code = textwrap.dedent(
        """
        import os, sys, torch
        os.environ["TRITON_INTERPRET"] = "1"
        from nayer_kernels.noisy_init_triton import reinit_noisy_linears_triton
        out = []
        for init in ("normal", "kaiming_uniform"):
            w = torch.empty(2, 8, 64)
            reinit_noisy_linears_triton(w, None, init, 123456789)
            out.append(w)
        torch.save(out, sys.argv[1])
        """
    )
    path = tmp_path / "interpreter_draws.pt"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=300, env=env)
    cpu = torch.load(path)
    for init, ref in zip(("normal", "kaiming_uniform"), cpu):
        w = torch.empty(2, 8, 64, device="cuda")
        noisy_triton.reinit_noisy_linears_triton(w, None, init, 123456789)
        torch.testing.assert_close(w.cpu(), ref, atol=1e-5, rtol=1e-5)
