"""What compression buys on a device: serialized size and CPU latency.

* :func:`state_dict_bytes`: bytes of ``torch.save(model.state_dict())``, what a checkpoint
  occupies (shared tensors, such as tied embeddings, are stored once).
* :func:`compressed_state_dict_bytes`: the same bytes after zlib (deflate), the size of a
  compressed download; pruned zeros show up here, not in the raw size (Han et al. 2016,
  "Deep Compression", likewise follows pruning and quantization by entropy coding).
* :func:`cpu_latency`: wall-clock time of a callable, after warm-up, as median / min / mean /
  quartiles over repeats. On a shared machine compare only ratios measured in one process.
* :func:`interleaved_latency`: several callables on the same input timed in rotating rounds
  (a float model beside its compressed copies), so that a drift of a shared machine's speed
  hits them alike; per callable the median and the ratio of medians to a reference.

Both time through the one shared timer, :mod:`dltricks.utils.timing`.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dltricks.utils.timing import interleaved_ms, sample_ms, summarize_ms


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
    with torch.inference_mode():
        times = sample_ms(lambda: fn(*args, **kwargs), repeats, warmup)
    s = summarize_ms(times)
    return {"median_s": s["median"] / 1e3, "min_s": s["min"] / 1e3, "mean_s": s["mean"] / 1e3,
            "q1_s": s["q1"] / 1e3, "q3_s": s["q3"] / 1e3, "repeats": float(repeats)}


def interleaved_latency(fns: dict[str, Callable[[Any], Any]], x: Any, rounds: int = 20,
                        warmup: int = 2,
                        reference: str | None = None) -> dict[str, dict[str, float]]:
    """Milliseconds per call of each ``fn(x)``, the callables interleaved round by round.

    Args:
        fns: callables by name (a float model, its int8 copy, an ONNX runner, ...).
        x: the one input every callable gets.
        rounds: timed rounds (each calls every function once, order rotated).
        warmup: untimed rounds first.
        reference: name whose median the ``ratio`` column divides by (default: the first).

    Returns:
        Per name: ``median_ms``, ``q1_ms``, ``q3_ms``, ``min_ms``, ``ratio`` (median over the
        reference's median; < 1 is faster) and ``min_ratio`` (minimum over the reference's
        minimum: on a loaded machine noise only adds time, and adds more to the slower call,
        so the ratio of minima is the steadier one).
    """
    if not fns:
        raise ValueError("interleaved_latency needs at least one callable.")
    reference = reference or next(iter(fns))
    if reference not in fns:
        raise ValueError(f"reference {reference!r} is not one of {list(fns)}.")
    with torch.inference_mode():
        times = interleaved_ms({k: (lambda f=f: f(x)) for k, f in fns.items()}, rounds, warmup)
    out = {}
    for k, t in times.items():
        s = summarize_ms(t)
        out[k] = {"median_ms": s["median"], "q1_ms": s["q1"], "q3_ms": s["q3"],
                  "min_ms": s["min"]}
    ref, ref_min = out[reference]["median_ms"], out[reference]["min_ms"]
    for v in out.values():
        v["ratio"] = v["median_ms"] / ref if ref > 0 else float("nan")
        v["min_ratio"] = v["min_ms"] / ref_min if ref_min > 0 else float("nan")
    return out
