"""``python -m nayer_scale.export RUN_DIR --format hf OUT [...]`` (see :mod:`nayer_scale.export`)."""

import sys

import torch

from .publish import main

if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
