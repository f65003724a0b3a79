"""One latency timer for every caller: wall-clock milliseconds of Python callables.

* :func:`timed_call` times one call; CUDA work is synchronised before the clock is read, so the
  time covers the kernels, not only their launch.
* :func:`sample_ms` returns every timed call after ``warmup`` untimed ones; :func:`time_ms`
  reduces them to the minimum (on a shared machine noise only adds time, so the minimum is the
  steadier figure) or the median; :func:`summarize_ms` gives median, quartiles, min and mean.
* :func:`interleaved_ms` times several callables in rotating rounds, so that a drift of a shared
  machine's speed hits all of them alike (compare within a round, or medians over rounds).

The callers choose the grad mode (wrap in :func:`torch.inference_mode` for inference timing).
``torch.utils.benchmark.Timer`` was considered: it adapts the number of runs to a time budget
and reports medians, but it times one statement at a time, which cannot interleave arms.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import torch

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

STATISTICS = ("min", "median")


def sync(device: torch.device | str) -> None:
    """Waits for queued work on ``device`` (CUDA only; CPU work is synchronous)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed_call(fn: Callable[[], R], device: torch.device | str = "cpu") -> tuple[float, R]:
    """(milliseconds, result) of one call of ``fn``."""
    sync(device)
    t0 = time.perf_counter()
    result = fn()
    sync(device)
    return (time.perf_counter() - t0) * 1e3, result


def _check(repeats: int, warmup: int, what: str = "repeats") -> None:
    if repeats < 1 or warmup < 0:
        raise ValueError(f"{what} must be >= 1 and warmup >= 0, got {repeats} and {warmup}.")


def sample_ms(fn: Callable[[], Any], repeats: int, warmup: int = 0,
              device: torch.device | str = "cpu") -> list[float]:
    """Milliseconds of each of ``repeats`` timed calls, after ``warmup`` untimed ones."""
    _check(repeats, warmup)
    for _ in range(warmup):
        fn()
    return [timed_call(fn, device)[0] for _ in range(repeats)]


def time_ms(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1,
            device: torch.device | str = "cpu", statistic: str = "min") -> float:
    """The ``statistic`` (``"min"`` or ``"median"``) of ``repeats`` timed calls, in ms."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}.")
    times = sample_ms(fn, repeats, warmup, device)
    return min(times) if statistic == "min" else statistics.median(times)


def summarize_ms(times: Sequence[float]) -> dict[str, float]:
    """``median``, ``q1``, ``q3``, ``min``, ``mean`` and ``n`` of a list of timings."""
    if not times:
        raise ValueError("summarize_ms needs at least one timing.")
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {"median": statistics.median(times), "q1": q[0], "q3": q[2], "min": min(times),
            "mean": statistics.fmean(times), "n": float(len(times))}


def interleaved_ms(fns: Mapping[K, Callable[[], Any]], rounds: int, warmup: int = 0,
                   device: torch.device | str = "cpu") -> dict[K, list[float]]:
    """Milliseconds of every timed call of each function, the functions interleaved.

    ``warmup`` untimed rounds, then ``rounds`` timed ones; each round calls every function
    once, the order rotated by one every round.
    """
    _check(rounds, warmup, "rounds")
    keys = list(fns)
    times: dict[K, list[float]] = {k: [] for k in keys}
    for r in range(warmup + rounds):
        k0 = r % len(keys) if keys else 0
        for k in keys[k0:] + keys[:k0]:
            ms, _ = timed_call(fns[k], device)
            if r >= warmup:
                times[k].append(ms)
    return times


__all__ = ["interleaved_ms", "sample_ms", "summarize_ms", "sync", "time_ms", "timed_call"]
