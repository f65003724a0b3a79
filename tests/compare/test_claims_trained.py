"""The guide's table on trained models only: a family that did not learn the task gives
"premise not met", never a verdict; learning curves with seed bands from stored units."""

import pytest

from dltricks.compare.claims import evaluate_claims, gate, learned, not_learned_text
from dltricks.compare.runner import learning_curves


def _comp(treatment, baseline, metric, verdict, primary=True, mt=0.9, mb=0.5):
    return {"treatment": treatment, "baseline": baseline, "metric": metric,
            "primary": primary, "mean_treatment": mt, "mean_baseline": mb, "diff": mt - mb,
            "ci_low": 0.1, "ci_high": 0.6, "verdict": verdict}


def _result(solved: dict, comps: list, cap: int = 2000, threshold: float = 0.95,
            premises_met: bool | None = None) -> dict:
    arms = {arm: {"label": arm, "metrics": {"solved": {"values": v}}}
            for arm, v in solved.items()}
    return {"analysis": {"verdict": "supported", "comparisons": comps, "arms": arms,
                         "premises_met": premises_met},
            "target": {"threshold": threshold}, "step_cap": cap}


def _acc(**experiments) -> dict:
    return {"accuracy": {"status": "ok", "result": experiments}}


def test_unsolved_family_makes_extrapolation_a_premise_not_met():
    # the stored numbers say "supported", but the Transformers never solved the task
    ih = _result({"mamba": [1.0, 1.0, 1.0], "transformer": [0.0, 0.0, 1.0],
                  "transformer_abs": [0.0, 0.0, 0.0]},
                 [_comp("mamba", "transformer", "acc_x64", "supported"),
                  _comp("mamba", "transformer_abs", "acc_x64", "supported")])
    rows = {r["id"]: r for r in evaluate_claims(_acc(mvt_induction_heads=ih))}
    row = rows["long_sequences"]
    assert row["verdict"] == "premise not met"
    assert "transformer: not learned within 2000 steps (1/3 seeds reached 0.95)" in \
        row["evidence"]
    assert "transformer_abs: not learned within 2000 steps (0/3 seeds" in row["evidence"]


def test_extrapolation_counts_when_both_families_solved():
    ih = _result({"mamba": [1.0, 1.0, 1.0], "transformer": [1.0, 1.0, 0.0],
                  "transformer_abs": [0.0, 0.0, 0.0]},
                 [_comp("mamba", "transformer", "acc_x64", "supported"),
                  _comp("mamba", "transformer_abs", "acc_x64", "supported")])
    row = {r["id"]: r for r in evaluate_claims(_acc(mvt_induction_heads=ih))}["long_sequences"]
    # one comparison measured on trained models, the other set aside: supported, with both
    assert row["verdict"] == "supported"
    assert "acc_x64: mamba 0.9 vs transformer 0.5" in row["evidence"]
    assert "(premise not met)" in row["evidence"]


def test_global_context_is_never_supported_from_unsolved_models():
    # the Transformer learned, Mamba did not: the old snapshot rule would say "supported"
    sc = _result({"mamba": [0.0, 0.0, 0.0], "transformer": [1.0, 1.0, 1.0]},
                 [_comp("transformer", "mamba", "steps_to_target", "supported"),
                  _comp("transformer", "mamba", "val_at_equal_compute", "supported")],
                 cap=1500)
    rows = {r["id"]: r for r in evaluate_claims(_acc(mvt_selective_copying=sc))}
    assert rows["global_context"]["verdict"] == "premise not met"
    assert "mamba: not learned within 1500 steps (0/3 seeds reached 0.95)" in \
        rows["global_context"]["evidence"]
    # both learned: the lab's verdicts count
    both = _result({"mamba": [1.0, 1.0, 1.0], "transformer": [1.0, 1.0, 1.0]},
                   [_comp("transformer", "mamba", "steps_to_target", "contradicted"),
                    _comp("transformer", "mamba", "val_at_equal_compute", "inconclusive")])
    rows = {r["id"]: r for r in evaluate_claims(_acc(mvt_selective_copying=both))}
    assert rows["global_context"]["verdict"] == "contradicted"
    # the hybrid claim follows the same rule
    hy = _result({"mamba": [0.0, 0.0, 0.0], "hybrid": [1.0, 1.0, 1.0]},
                 [_comp("hybrid", "mamba", "steps_to_target", "supported", primary=False)])
    rows = {r["id"]: r for r in evaluate_claims(_acc(mvt_mqar=hy))}
    assert rows["hybrid"]["verdict"] == "premise not met"


def test_results_without_a_target_fall_back_on_the_experiments_premises():
    old = _result({}, [_comp("transformer", "mamba", "test_token_accuracy", "supported")],
                  premises_met=False)
    assert learned(old, "mamba") is None
    assert gate(old, old["analysis"]["comparisons"][0]) == "premise not met"
    old["analysis"]["premises_met"] = None
    assert gate(old, old["analysis"]["comparisons"][0]) == "supported"
    assert not_learned_text(_result({"mamba": [0.0]}, [], cap=600, threshold=0.9),
                            "mamba") == "mamba: not learned within 600 steps (0/1 seeds " \
                                        "reached 0.9)"


def test_learning_curves_band_over_seeds_against_steps_and_seconds():
    def unit(seed, rows, sps):
        return {"arm": "mamba", "seed": seed, "status": "ok", "seconds_per_step": sps,
                "curves": {"val": [[s, v, 1.0] for s, v in rows]}}

    stored = {"config": {"arms": [{"name": "mamba", "label": "Mamba"}]},
              "units": {"a": unit(0, [(10, 0.2), (20, 0.6), (30, 1.0)], 0.1),
                        # stopped early at step 20 (solved): holds 0.9 afterwards
                        "b": unit(1, [(10, 0.4), (20, 0.9)], 0.2)}}
    c = learning_curves(stored, points=4)["mamba"]
    assert c["label"] == "Mamba" and c["seeds"] == [0, 1]
    assert c["steps"] == [10, 20, 30]
    assert c["mean"] == pytest.approx([0.3, 0.75, 0.95])
    assert c["lo"] == pytest.approx([0.2, 0.6, 0.9]) and c["hi"] == pytest.approx([0.4, 0.9, 1.0])
    # seconds: seed 0 evaluates at 1, 2, 3 s, seed 1 at 2, 4 s; grid 1, 2, 3, 4 s
    assert c["seconds"] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert c["sec_mean"] == pytest.approx([0.2, 0.5, 0.7, 0.95])  # seed 1 not yet at 1 s
    assert c["sec_lo"][0] == c["sec_hi"][0] == pytest.approx(0.2)


def test_target_summary_counts_seeds_solved_and_keeps_failures_at_the_cap():
    from dltricks.compare.runner import target_summary

    def st(values):
        return {"values": values}

    stored = {"analysis": {"arms": {
        "mamba": {"label": "Mamba", "metrics": {"solved": st([1.0, 1.0, 0.0]),
                                                "steps_to_target": st([200.0, 300.0, 600.0]),
                                                "best_val": st([1.0, 0.98, 0.5])}},
        "plain": {"label": "no target", "metrics": {"test_accuracy": st([0.5])}}}}}
    rows = target_summary(stored)
    assert [r["arm"] for r in rows] == ["mamba"]  # arms without a target are left out
    r = rows[0]
    assert (r["n"], r["solved"], r["learned"]) == (3, 2, True)
    assert r["steps_to_target"]["mean"] == pytest.approx(1100 / 3)  # the cap counted
    assert r["steps_to_target"]["sd"] == pytest.approx(208.1666, rel=1e-4)
    assert r["val_at_equal_compute"]["mean"] is None


def test_partial_results_count_only_the_seeds_that_ran():
    # 8 seeds configured, 3 finished: 2 of the 3 solved -> learned
    r = _result({"mamba": [1.0, 1.0, 0.0, None, None, None, None, None]}, [])
    assert learned(r, "mamba") is True
    assert not_learned_text(r, "mamba").endswith("(2/3 seeds reached 0.95)")


def test_dynamic_depth_row_rests_on_computation_with_accuracy_beside():
    """The guide's row is "dynamic scaling reduces redundant computation": fewer layers and
    less latency decide it; the lab experiment's primary "no loss of accuracy" comparison,
    contradicted here, is shown beside and does not turn the row into "conflicting"."""
    ee = _result({"mamba": [1.0, 1.0, 1.0], "early_exit": [1.0, 1.0, 1.0]},
                 [_comp("early_exit", "mamba", "avg_depth", "supported", mt=1.2, mb=4.0),
                  _comp("early_exit", "mamba", "latency_ms", "supported", mt=12.0, mb=32.0),
                  _comp("early_exit", "mamba", "test_accuracy", "contradicted")],
                 threshold=0.9)
    ee["analysis"]["arms"]["early_exit"]["metrics"]["avg_depth"] = {"mean": 1.2}
    row = {r["id"]: r for r in evaluate_claims(_acc(mvt_early_exit=ee))}["dynamic_depth"]
    assert row["verdict"] == "supported"
    assert "(contradicted)" in row["evidence"]  # the accuracy comparison's verdict, beside
