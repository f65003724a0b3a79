"""Measurement helpers and the claim rules, on inputs whose answer is known."""

import math

import pytest
import torch

from dltricks.compare.claims import CLAIMS, evaluate_claims
from dltricks.compare.measure import (
    crossover,
    fit_exponent,
    interleaved_ms,
    peak_bytes,
    time_ms,
    timed_call,
)


def test_fit_exponent_recovers_power_laws_over_the_tail():
    xs = [256, 512, 1024, 2048, 4096]
    assert fit_exponent(xs, [x**2 for x in xs]) == pytest.approx(2.0)
    # a constant overhead bends the start; the tail still shows the growth
    assert fit_exponent(xs, [1000 + x for x in xs], tail=2) == pytest.approx(0.8, abs=0.1)
    assert fit_exponent(xs, [None, None, None, None, 5.0]) is None


def test_crossover_interpolates_in_log_space():
    xs = [1, 2, 4, 8]
    a = [10, 10, 10, 10]  # flat
    b = [2.5, 5, 20, 40]  # crosses a between 2 and 4, at x where b = 10: log-midpoint
    assert crossover(xs, a, b) == pytest.approx(math.sqrt(8), rel=1e-6)
    assert crossover(xs, [1, 1, 1, 1], b) == 1.0  # below from the start
    assert crossover(xs, [100] * 4, b) is None  # never below


def test_interleaved_rounds_rotate_the_order_and_skip_the_warmup():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    times = interleaved_ms(fns, rounds=3, warmup=1)
    assert calls == list("abc" "bca" "cab" "abc")  # round r starts at the r-th function
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    assert timed_call(lambda: 42)[1] == 42
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        interleaved_ms(fns, rounds=0)


def test_time_and_peak_memory_measure_real_work():
    assert time_ms(lambda: torch.randn(100, 100) @ torch.randn(100, 100), repeats=2) > 0

    def alloc():
        x = torch.ones(1_000_000)  # 4 MB held while y is made
        y = x * 2
        return y.sum()

    assert peak_bytes(alloc) >= 8_000_000


def _sections(attn_exp: float, mamba_ms: float, tf_ms: float, verdict: str) -> dict:
    lengths = [1024, 2048, 4096]
    fam = lambda ms, exp, mem: {"label": "x", "lengths": lengths,  # noqa: E731
                                "fwd_ms": [ms * (L / 4096) ** exp for L in lengths],
                                "fwd_bwd_ms": [ms * (L / 4096) ** exp for L in lengths],
                                "peak_mib": [mem * L / 4096 for L in lengths]}
    comp = {"primary": True, "metric": "test_token_accuracy", "treatment": "transformer",
            "baseline": "mamba", "mean_treatment": 0.9, "mean_baseline": 0.5, "diff": 0.4,
            "ci_low": 0.3, "ci_high": 0.5, "verdict": verdict}
    acc = {e: {"analysis": {"verdict": verdict, "comparisons": [comp], "arms": {}}}
           for e in ("mvt_selective_copying", "mvt_mqar", "mvt_mnist1d")}
    return {
        "complexity": {"status": "ok", "result": {
            "families": {"mamba": fam(mamba_ms, 1.0, 10), "transformer": fam(tf_ms, attn_exp,
                                                                              10)},
            "exponents": {"mamba": {"fwd_ms": 1.0, "fwd_bwd_ms": 1.0, "peak_mib": 1.0},
                          "transformer": {"fwd_ms": attn_exp, "fwd_bwd_ms": attn_exp,
                                          "peak_mib": 1.0}},
            "crossover": {"transformer": {"fwd_ms": 2000.0, "fwd_bwd_ms": 2000.0,
                                          "peak_mib": None}}}},
        "accuracy": {"status": "ok", "result": acc},
    }


def test_claim_rules_follow_the_measurements():
    by_id = {r["id"]: r for r in evaluate_claims(_sections(2.0, 100, 400, "supported"))}
    assert by_id["quadratic"]["verdict"] == "supported"
    assert "L^2.00" in by_id["quadratic"]["evidence"]
    assert by_id["long_sequences"]["verdict"] == "supported"  # 4x cheaper, no accuracy row
    assert by_id["global_context"]["verdict"] == "supported"
    assert by_id["latency"]["verdict"] == "missing"  # no inference section
    assert by_id["scale"]["verdict"] == "not measurable here"
    by_id = {r["id"]: r for r in evaluate_claims(_sections(1.0, 100, 100, "contradicted"))}
    assert by_id["quadratic"]["verdict"] == "contradicted"
    assert by_id["long_sequences"]["verdict"] == "inconclusive"  # equal cost
    assert by_id["global_context"]["verdict"] == "contradicted"
    assert by_id["memory"]["verdict"] == "inconclusive"  # equal memory
    assert {c.id for c in CLAIMS} == {r["id"] for r in evaluate_claims({})}
