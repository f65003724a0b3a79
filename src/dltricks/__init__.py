"""dltricks: a deep-learning tips & tricks guide made executable."""

import os as _os

# Idle OpenMP threads sleep instead of spinning. PyTorch's intra-op pool and numba's (the CPU
# selective scan) are separate OpenMP pools; with the default spin-waiting they fight for the
# cores, and on a 2-core machine shared with other work a training step measured 10-20x
# slower (docs/benchmarks.md). Only takes effect when dltricks is imported before torch (the
# CLI does); set OMP_WAIT_POLICY yourself to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
