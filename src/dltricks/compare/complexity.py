"""Section 1 — cost against sequence length: forward and forward+backward latency, peak memory.

Every family's language model (matched parameters, :mod:`dltricks.models.families`) runs on
random tokens of each length, the families interleaved at each length so machine noise hits
them alike. Lengths double from the first; a family stops growing once one of its
measurements exceeds the point budget (the profile's time cap), and the longest length is where
the last family stops. Reported: per-length times and memory, growth exponents fitted over the
longest three lengths, and the crossover length from which Mamba is cheaper than attention.

Expectations to test, not assume: attention is O(L^2) in compute, Mamba's scan O(L); with
PyTorch's fused SDPA kernels attention's *memory* is O(L) too (no L x L matrix is stored), so a
quadratic-memory claim may well not hold for a modern implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from dltricks.compare.measure import crossover, fit_exponent, peak_bytes
from dltricks.models.families import get_family, model_spec
from dltricks.utils.timing import time_ms

VOCAB = 16


def build_lm(family: str, dim: int, depth: int, device: torch.device | str = "cpu"
             ) -> torch.nn.Module:
    """The family's language model at ``dim`` x ``depth``, matched to Mamba's size."""
    from dltricks.models import create_model

    spec = model_spec(family, "lm", dim, depth, vocab_size=VOCAB)
    return create_model(spec["name"], vocab_size=VOCAB, **spec["kwargs"]).to(device)


def _fwd(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def _fwd_bwd(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        logits = model(x)
        F.cross_entropy(logits.flatten(0, 1), x.flatten()).backward()
        model.zero_grad(set_to_none=True)

    return run


def _pick(rec: dict[str, Any], key: str, lengths: list[int]) -> list[float]:
    return [rec[key][rec["lengths"].index(L)] for L in lengths]


def run_complexity(families: Sequence[str], *, dim: int = 64, depth: int = 2, batch: int = 1,
                   start: int = 256, max_len: int = 8192, point_budget_s: float = 10.0,
                   repeats: int = 2, device: str = "cpu",
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measures every family at lengths start, 2*start, ... up to ``max_len``.

    Args:
        families: family names (at least one).
        dim, depth: model size (the Mamba paper's synthetic-task models: 64 x 2).
        batch: sequences per call.
        start, max_len: first and largest length.
        point_budget_s: a family stops growing after a measurement slower than this.
        repeats: timed calls per point (fastest kept).
        device: ``"cpu"`` or ``"cuda"``.
        progress: called with a line per point.

    Returns:
        ``lengths``, per family ``{label, params, lengths, fwd_ms, fwd_bwd_ms, peak_mib}``,
        ``exponents`` (per family and metric) and ``crossover`` (per non-Mamba family and
        metric: the length from which Mamba is cheaper, None if never within range).
    """
    if not families:
        raise ValueError("run_complexity needs at least one family.")
    if start < 1 or max_len < start:
        raise ValueError(f"Need 1 <= start <= max_len, got {start}, {max_len}.")
    models = {f: build_lm(f, dim, depth, device) for f in families}
    out: dict[str, Any] = {"dim": dim, "depth": depth, "batch": batch, "device": device,
                           "threads": torch.get_num_threads(), "families": {}}
    for f, m in models.items():
        out["families"][f] = {"label": get_family(f).label,
                              "params": sum(p.numel() for p in m.parameters()),
                              "lengths": [], "fwd_ms": [], "fwd_bwd_ms": [], "peak_mib": []}
    active = list(families)
    lengths = []
    length = start
    while length <= max_len and active:
        lengths.append(length)
        x = torch.randint(0, VOCAB, (batch, length), device=device)
        for f in list(active):
            model, rec = models[f], out["families"][f]
            t0 = time.perf_counter()
            fwd = time_ms(_fwd(model, x), repeats, device=device)
            fwd_bwd = time_ms(_fwd_bwd(model, x), repeats, device=device)
            mem = peak_bytes(_fwd_bwd(model, x), device) / 2**20
            rec["lengths"].append(length)
            rec["fwd_ms"].append(fwd)
            rec["fwd_bwd_ms"].append(fwd_bwd)
            rec["peak_mib"].append(mem)
            if progress:
                progress(f"complexity {f} L={length}: fwd {fwd:.1f} ms, fwd+bwd "
                         f"{fwd_bwd:.1f} ms, peak {mem:.1f} MiB")
            # the next length costs at least twice this point: stop before the budget is broken
            if 2 * (time.perf_counter() - t0) > point_budget_s:
                active.remove(f)
        length *= 2
    out["lengths"] = lengths
    metrics = ("fwd_ms", "fwd_bwd_ms", "peak_mib")
    out["exponents"] = {f: {k: fit_exponent(r["lengths"], r[k]) for k in metrics}
                        for f, r in out["families"].items()}
    out["crossover"] = {}
    if "mamba" in out["families"]:
        mamba = out["families"]["mamba"]
        for f, r in out["families"].items():
            if f == "mamba":
                continue
            common = [L for L in mamba["lengths"] if L in r["lengths"]]
            out["crossover"][f] = {k: crossover(common, _pick(mamba, k, common),
                                                _pick(r, k, common)) for k in metrics}
    return out


__all__ = ["build_lm", "run_complexity"]
