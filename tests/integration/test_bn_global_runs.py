"""synthesis.bn_stats_scope=global: the BN-statistics loss on the union of all processes'
synthesis batches, through one all-reduce per generator step.

Oracle: the published per-process loss (scope "process") computed by ONE process on the
concatenation of every process's batch. With 2 gloo processes, each process's loss must equal it
and its dL/dx must equal the oracle's gradient restricted to its own rows (an all-reduce whose
backward summed the gradients would give twice that), for the PyTorch reference and for the
Triton kernels in the interpreter; the EMA (momentum) is global too.
The runs of this topic (distillations, subprocesses); its fast tests are in tests/unit/test_bn_global.py.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bn_global_worker import BATCH_PER_PROCESS
from safetensors.torch import load_file

from helpers.bn_global import _ema_tol, _oracle

HAS_TRITON = importlib.util.find_spec("triton") is not None
WORKER = Path(__file__).parents[1] / "bn_global_worker.py"
TOL = {"rtol": 1e-5, "atol": 1e-6}
# var = S2 / M - (S1 / M)^2 cancels when |mean - running mean| >> std (this teacher's running means
# are random, up to ~3 std off): fp32 statistics agree to ~1e-5 relative, not 1e-7
STATS_TOL = {"rtol": 1e-4, "atol": 1e-5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "backend",
    [
        "reference",
        pytest.param("triton", marks=pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")),
    ],
)
def test_two_gloo_processes_match_one_process_on_the_concatenated_batch(tmp_path, backend):
    world_size, port = 2, _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NAYER_KERNELS")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    if backend == "triton" and not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(tmp_path / f"rank{r}.safetensors"), backend, str(world_size)],
            env=dict(env, RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world_size)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    oracle = _oracle(world_size)
    for r in range(world_size):
        got = load_file(tmp_path / f"rank{r}.safetensors")
        rows = slice(r * BATCH_PER_PROCESS, (r + 1) * BATCH_PER_PROCESS)
        for step in (0, 1):
            torch.testing.assert_close(got[f"loss{step}"], oracle[f"loss{step}"], **TOL)
            want = oracle[f"grad{step}"][rows]
            torch.testing.assert_close(got[f"grad{step}"], want, rtol=1e-4, atol=1e-5 * want.abs().max().item())
        for key in (k for k in oracle if k.startswith("ema")):
            torch.testing.assert_close(got[key], oracle[key], **_ema_tol(key, oracle), msg=key)
