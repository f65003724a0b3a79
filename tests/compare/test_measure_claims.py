"""Measurement helpers and the claim rules, on inputs whose answer is known."""

import math
import time

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
from dltricks.utils import timing


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


def test_the_comparison_times_with_the_one_project_timer():
    # the timers themselves are tested in tests/utils/test_timing.py
    assert (interleaved_ms, time_ms, timed_call) == (timing.interleaved_ms, timing.time_ms,
                                                     timing.timed_call)
    times = interleaved_ms({"slow": lambda: time.sleep(0.01), "fast": lambda: None}, rounds=2)
    assert min(times["slow"]) >= 10.0 > max(times["fast"])


def test_peak_memory_measures_real_work():
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
    assert by_id["latency"]["verdict"] == "not measured"  # no inference section
    assert by_id["scale"]["verdict"] == "not measured"
    assert by_id["scale"]["evidence"].startswith("not measurable here")
    by_id = {r["id"]: r for r in evaluate_claims(_sections(1.0, 100, 100, "contradicted"))}
    assert by_id["quadratic"]["verdict"] == "contradicted"
    assert by_id["long_sequences"]["verdict"] == "inconclusive"  # equal cost
    assert by_id["global_context"]["verdict"] == "contradicted"
    assert by_id["memory"]["verdict"] == "inconclusive"  # equal memory
    assert {c.id for c in CLAIMS} == {r["id"] for r in evaluate_claims({})}


def test_claims_combine_votes_by_the_labs_one_rule():
    from dltricks.compare.claims import _combine
    from dltricks.lab.verdicts import combine_verdicts

    for votes in (["supported"], ["supported", "inconclusive"], ["supported", "contradicted"],
                  ["inconclusive", "insufficient"], ["computed", "supported"]):
        assert _combine([*votes, "not measured"]) == combine_verdicts(votes)
    assert _combine(["supported", "contradicted"]) == "conflicting"
    assert _combine([]) == _combine(["not measured"]) == "not measured"  # nothing measured
    assert _combine(["premise not met", "premise not met"]) == "premise not met"
    assert _combine(["premise not met", "supported"]) == "supported"


def test_compare_report_draws_learning_curves_and_names_unlearned_families():
    from dltricks.compare.report import _target_rows, learning_curves_png

    curves = {"mamba": {"label": "Mamba", "seeds": [0, 1], "steps": [10, 20],
                        "mean": [0.5, 0.97], "lo": [0.4, 0.96], "hi": [0.6, 0.98],
                        "seconds": [1.0, 2.0], "sec_mean": [0.5, 0.97], "sec_lo": [0.4, 0.96],
                        "sec_hi": [0.6, 0.98]}}
    stat = {"mean": 15.0, "sd": 7.0, "values": [10.0, 20.0]}
    entry = {"learning_curves": curves, "step_cap": 20,
             "target": {"threshold": 0.95, "equal_compute_s": 1.5, "metric": "token_accuracy"},
             "target_summary": [
                 {"arm": "mamba", "label": "Mamba", "n": 2, "solved": 2, "learned": True,
                  "steps_to_target": stat, "seconds_to_target": stat, "best_val": stat,
                  "val_at_equal_compute": stat},
                 {"arm": "transformer", "label": "Transformer", "n": 2, "solved": 0,
                  "learned": False, "steps_to_target": {"mean": 20.0, "sd": 0.0},
                  "seconds_to_target": {}, "best_val": {}, "val_at_equal_compute": {}}]}
    png = learning_curves_png(entry)
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert learning_curves_png({"learning_curves": {}}) is None
    header, rows = _target_rows(entry)
    assert header[1] == "solved" and rows[0][1] == "2/2" and rows[0][2].startswith("15")
    assert rows[1][1] == "0/2 (not learned within 20 steps)" and rows[1][3] == "–"
