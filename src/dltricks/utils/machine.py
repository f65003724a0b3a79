"""What a measurement ran on: one function for every result file and report header.

Numbers measured on a shared CPU depend on the processor, the cores, torch's thread count and
how busy the machine was, so every stored result carries :func:`machine_info`.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

import dltricks


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages as ``"0.52 0.60 0.70"`` ("n/a" where unknown)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"


def machine_info() -> dict[str, str]:
    """Versions and machine facts that measured results depend on, all as strings.

    Keys: ``dltricks``, ``torch``, ``numpy``, ``python`` (versions); ``platform``, ``machine``
    (architecture), ``cpu`` (model name), ``cores`` (logical CPUs), ``torch_threads``,
    ``load_average`` (1/5/15 min at the time of the call), and ``cuda`` (the device name, or
    "none").
    """
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "dltricks": dltricks.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cores": str(os.cpu_count() or 0),
        "torch_threads": str(torch.get_num_threads()),
        "load_average": load_average(),
        "cuda": cuda,
    }


__all__ = ["cpu_name", "load_average", "machine_info"]
