"""Worker for tests/integration/test_multiprocess.py, started by `accelerate launch` with 2 CPU
processes (gloo).

argv: run_dir teacher_file eval_root lte_cache
Each process runs the tiny NAYER config and saves its copy of the student's weights as
<run_dir>/student-process-<rank>.pt so the test can compare them across processes.
"""

import sys
from pathlib import Path

import torch

from conftest import tiny_config  # tests/ is sys.path[0]: this file is run as a script
from nayer_scale.trainer import NayerTrainer

if __name__ == "__main__":
    run_dir, teacher, eval_root, lte_cache = (Path(a) for a in sys.argv[1:5])
    trainer = NayerTrainer(tiny_config(run_dir, teacher, eval_root, lte_cache))
    summary = trainer.fit()
    state = trainer.accelerator.unwrap_model(trainer.student).state_dict()
    torch.save(state, run_dir / f"student-process-{trainer.rank}.pt")
