"""What compression buys on a device: serialized size and CPU latency.

* :func:`state_dict_bytes`: bytes of ``torch.save(model.state_dict())``, what a checkpoint
  occupies (shared tensors, such as tied embeddings, are stored once).
* :func:`compressed_state_dict_bytes`: the same bytes after zlib (deflate), the size of a
  compressed download; pruned zeros show up here, not in the raw size (Han et al. 2016,
  "Deep Compression", likewise follows pruning and quantization by entropy coding).
* :func:`cpu_latency`: wall-clock time of a callable, after warm-up, as median / min / mean /
  quartiles over repeats. On a shared machine compare only ratios measured in one process.
"""

from __future__ import annotations

import io
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _saved(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict as ``torch.save`` writes it."""
    return len(_saved(model))


def compressed_state_dict_bytes(model: nn.Module, level: int = 6) -> int:
    """Bytes of the saved state dict after zlib compression at ``level`` (0–9)."""
    if not 0 <= level <= 9:
        raise ValueError(f"zlib level must be in 0..9, got {level}.")
    return len(zlib.compress(_saved(model), level))


def cpu_latency(fn: Callable[..., Any], *args: Any, warmup: int = 3, repeats: int = 10,
                **kwargs: Any) -> dict[str, float]:
    """Seconds per call of ``fn(*args, **kwargs)`` under ``torch.inference_mode``.

    Returns:
        ``median_s``, ``min_s``, ``mean_s``, ``q1_s``, ``q3_s`` and ``repeats``.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"Need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}.")
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn(*args, **kwargs)
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args, **kwargs)
            times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_s": statistics.median(times), "min_s": min(times),
            "mean_s": statistics.fmean(times), "q1_s": q[0], "q3_s": q[2],
            "repeats": float(repeats)}
