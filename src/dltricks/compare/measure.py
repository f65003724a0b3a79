"""Timing, memory and curve fitting shared by the comparison's sections.

* Latency: :mod:`dltricks.utils.timing` (the project's one timer, re-exported here): the
  minimum of ``repeats`` timed calls after ``warmup`` untimed ones (on a shared machine noise
  only adds time, so the minimum is the steadier figure); CUDA work is synchronised before the
  clock is read. To compare several callables, ``interleaved_ms`` times them in rotating rounds
  so that a drifting machine speed hits all alike.
* Peak memory: on CPU, the torch allocator's peak while the call runs
  (:func:`dltricks.analysis.complexity.peak_memory_of`, from profiler memory events); on CUDA,
  ``torch.cuda.max_memory_allocated`` above what was allocated before the call.
* Growth exponents: the least-squares slope of log(y) on log(x), over the longest lengths
  (the constant overheads of short lengths bend the curve at its start).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from dltricks.utils.timing import interleaved_ms, time_ms, timed_call


def peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Extra memory at the highest point of ``fn()`` (see the module docstring)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    from dltricks.analysis.complexity import peak_memory_of

    return peak_memory_of(fn)


def fit_exponent(xs: Sequence[float], ys: Sequence[float | None], tail: int = 3
                 ) -> float | None:
    """Slope of log y against log x over the last ``tail`` finite points (None if < 2)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True)
           if y is not None and math.isfinite(y) and y > 0 and x > 0]
    pts = pts[-tail:]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def crossover(xs: Sequence[float], a: Sequence[float | None], b: Sequence[float | None]
              ) -> float | None:
    """The smallest x from which ``a`` stays below ``b``, interpolated in log-log space.

    Returns ``xs[0]`` when ``a`` is below from the start, None when it never ends below.
    """
    pts = [(x, ya, yb) for x, ya, yb in zip(xs, a, b, strict=True)
           if ya is not None and yb is not None and ya > 0 and yb > 0]
    if not pts or pts[-1][1] >= pts[-1][2]:
        return None
    # last point where a >= b; the crossing lies between it and the next one
    last_above = max((i for i, p in enumerate(pts) if p[1] >= p[2]), default=None)
    if last_above is None:
        return float(pts[0][0])
    (x0, a0, b0), (x1, a1, b1) = pts[last_above], pts[last_above + 1]
    d0, d1 = math.log(a0 / b0), math.log(a1 / b1)  # d0 >= 0 > d1
    t = d0 / (d0 - d1)
    return float(math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0))))


__all__ = ["crossover", "fit_exponent", "interleaved_ms", "peak_bytes", "time_ms",
           "timed_call"]
