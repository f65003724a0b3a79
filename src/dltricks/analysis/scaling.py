"""Inference cost by sequence length: latency and peak memory of a model at growing lengths.

The measure behind the efficient-attention claims: dense attention materialises an L x L score
matrix per head, so its memory and time grow as O(L^2) (Vaswani et al. 2017); local and sparse
attention (Beltagy et al. 2020, Longformer), low-rank projections (Wang et al. 2020, Linformer)
and exact attention computed in tiles (Dao et al. 2022, FlashAttention, whose paper reports
exactly these two curves, runtime and memory against sequence length) avoid it. Here both are
measured on this machine's CPU: latency as the fastest of several forwards (on a shared machine
noise only adds time), optionally as a ratio against a baseline model timed alternately on the
same input, and peak memory as the allocator's extra bytes during one forward
(:func:`dltricks.analysis.complexity.measure_peak_memory`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from dltricks.analysis.complexity import measure_peak_memory
from dltricks.utils.timing import timed_call


def scaling_costs(model: nn.Module, lengths: Sequence[int], input_for: Callable[[int], tuple],
                  repeats: int = 10, budget_ms: float = 1000.0, memory: bool = True,
                  baseline: nn.Module | None = None) -> dict[str, float | None]:
    """Inference latency and peak memory of ``model`` at each token length.

    Latency is the fastest of up to ``repeats`` forwards after one warm-up: as many as fit in
    about ``budget_ms`` (at least one), so fast calls get more tries (on a shared machine noise
    only adds time, and the minimum of more tries is steadier) and slow ones stay affordable.
    With a ``baseline`` model, its forwards alternate with the model's on the same input and
    the ratio of the two fastest times is reported too: load on a shared machine slows both
    alike, so the ratio is far steadier than either time (the convention of ``benchmarks/``).

    Args:
        model: a trained model (copied to the CPU in fp32, eval mode; the original is untouched).
        lengths: token counts to measure.
        input_for: maps a token count to the input shape of the model, e.g.
            ``lambda n: (1, 1, 2 * n)`` for signals cut into patches of 2.
        repeats: most timed forwards per length.
        budget_ms: time the timed forwards of one length may take, roughly.
        memory: also measure the peak extra allocator memory of one forward.
        baseline: a model to time against (e.g. the same network with dense attention).

    Returns:
        ``latency_ms_len<L>``, ``peak_mb_len<L>`` (with ``memory``) and
        ``latency_ratio_len<L>`` (with ``baseline``: model time / baseline time) per length;
        None where the model rejects the length (a ``ValueError``, e.g. Linformer past its
        projection length).

    Raises:
        ValueError: for ``repeats < 1`` or a negative ``budget_ms``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    if budget_ms < 0:
        raise ValueError(f"budget_ms must not be negative, got {budget_ms}.")

    def prepare(m: nn.Module) -> nn.Module:
        return copy.deepcopy(m).to("cpu").float().eval()

    model = prepare(model)
    base = None if baseline is None else prepare(baseline)
    out: dict[str, float | None] = {}
    for n in lengths:
        shape = input_for(n)
        x = torch.randn(shape)
        keys = [f"latency_ms_len{n}"] + [f"peak_mb_len{n}"] * memory + [
            f"latency_ratio_len{n}"] * (base is not None)
        try:
            times: list[float] = []
            base_times: list[float] = []
            with torch.inference_mode():
                for m in (model, base):
                    if m is not None:
                        m(x)  # warm-up
                rounds = repeats
                while len(times) < rounds:
                    times.append(timed_call(partial(model, x))[0])
                    if base is not None:
                        base_times.append(timed_call(partial(base, x))[0])
                    if len(times) == 1:  # as many rounds as fit in the budget
                        per_round = times[0] + (base_times[0] if base_times else 0.0)
                        rounds = max(1, min(repeats, int(budget_ms / max(per_round, 1e-3))))
            out[keys[0]] = min(times)
            if base_times:
                out[f"latency_ratio_len{n}"] = min(times) / min(base_times)
            if memory:
                out[f"peak_mb_len{n}"] = measure_peak_memory(model, shape) / 2**20
        except ValueError:
            out.update(dict.fromkeys(keys))
    return out


__all__ = ["scaling_costs"]
