"""``python -m benchmarks.gpu_suite ...``: see the package docstring (``--help``)."""

import os
import sys

from benchmarks.gpu_suite.orchestrator import main

if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
