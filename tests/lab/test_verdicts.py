"""Verdicts from stored results: learning-rate selection, failures, premises, tips, Holm."""

import pytest

from dltricks.lab.experiment import Arm, Budget, Claim, Experiment, Premise
from dltricks.lab.verdicts import analyze, apply_holm, combine_verdicts, tip_verdicts

SEEDS = [0, 1, 2]


def unit(arm, seed, **metrics):
    return {"arm": arm, "seed": seed, "status": "ok", "metrics": {"diverged": 0.0, **metrics},
            "curves": {}, "seconds": 1.0}


def stored(units, claims, *, arms=("a", "b"), grid=None, premises=(), tips=("t1", "t2")):
    run_arms = []
    for a in arms:
        rates = (grid or {}).get(a, ())
        run_arms += [{"name": f"{a}@lr={lr:g}", "label": a, "base": a, "lr": lr}
                     for lr in rates] or [{"name": a, "label": a, "base": a, "lr": None}]
    return {"id": "exp", "status": "complete", "tips": list(tips),
            "config": {"seeds": SEEDS, "arms": run_arms,
                       "base_arms": [{"name": a, "label": a} for a in arms],
                       "claims": claims, "premises": list(premises),
                       "lr_grid": {k: list(v) for k, v in (grid or {}).items()},
                       "lr_select": "val_accuracy", "lr_select_mode": "max"},
            "units": {f"{u['arm']}/s{u['seed']}": u for u in units}}


def claim(metric="test_accuracy", direction="higher", primary=True, tips=None, **kw):
    return {"treatment": "b", "baseline": "a", "metric": metric, "direction": direction,
            "primary": primary, "tips": tips or [], **kw}


@pytest.mark.parametrize(("verdicts", "expected"), [
    ([], "not measured"),
    (["supported", "supported"], "supported"),
    (["supported", "inconclusive"], "partly supported"),
    (["supported", "insufficient"], "partly supported"),
    (["supported", "contradicted"], "conflicting"),
    (["computed", "contradicted"], "conflicting"),
    (["contradicted", "inconclusive"], "contradicted"),
    (["contradicted"], "contradicted"),
    (["computed", "computed"], "computed"),
    (["computed", "supported"], "supported"),
    (["computed", "inconclusive"], "partly supported"),
    (["inconclusive", "insufficient"], "inconclusive"),
    (["insufficient"], "insufficient"),
    (["premise not met", "premise not met"], "premise not met"),
    (["premise not met", "supported"], "supported"),
])
def test_combination_table(verdicts, expected):
    assert combine_verdicts(verdicts) == expected


def test_best_learning_rate_is_chosen_on_validation_and_compared_best_with_best():
    units = []
    for s in SEEDS:
        # a: lr 0.1 is better on validation (0.8 vs 0.6); its test accuracy is 0.70 + s/100
        units += [unit("a@lr=0.01", s, val_accuracy=0.6, test_accuracy=0.95),
                  unit("a@lr=0.1", s, val_accuracy=0.8, test_accuracy=0.70 + s / 100),
                  unit("b@lr=0.01", s, val_accuracy=0.9, test_accuracy=0.80 + s / 100 + (
                      0.002 * s)),
                  unit("b@lr=0.1", s, val_accuracy=0.5, test_accuracy=0.1)]
    a = analyze(stored(units, [claim()], grid={"a": (0.01, 0.1), "b": (0.01, 0.1)}))
    sel = a["lr_selection"]
    assert (sel["a"]["chosen_lr"], sel["b"]["chosen_lr"]) == (0.1, 0.01)
    assert [g["val_mean"] for g in sel["a"]["grid"]] == pytest.approx([0.6, 0.8])
    c = a["comparisons"][0]
    # test accuracy of the chosen arms, never of the best test value (0.95 at a@lr=0.01)
    assert (c["treatment_arm"], c["baseline_arm"]) == ("b@lr=0.01", "a@lr=0.1")
    assert c["values_baseline"] == pytest.approx([0.70, 0.71, 0.72])
    assert c["diff"] == pytest.approx(0.102) and c["verdict"] == "supported"
    assert a["arms"]["a"]["lr"] == 0.1 and len(a["variants"]) == 4


def test_a_diverged_rate_is_not_chosen_on_its_survivors():
    units = []
    for s, low_val, high_val in zip(SEEDS, (0.9, 0.9, 0.6), (None, 0.95, 0.7), strict=True):
        # lr 0.1 is best on the seeds that survive (0.825 > 0.8, the mean of lr 0.01) but
        # diverges on seed 0; counted as the worst validation value seen (0.6) it loses
        bad = unit("a@lr=0.1", s, val_accuracy=high_val, test_accuracy=0.9)
        if s == 0:
            bad["metrics"].update(diverged=1.0, test_accuracy=None)
        units += [unit("a@lr=0.01", s, val_accuracy=low_val, test_accuracy=0.8), bad,
                  unit("b", s, test_accuracy=0.8)]
    a = analyze(stored(units, [claim()], grid={"a": (0.01, 0.1)}))
    grid = {g["lr"]: g for g in a["lr_selection"]["a"]["grid"]}
    assert grid[0.1]["n_failed"] == 1
    assert grid[0.1]["val_mean"] == pytest.approx((0.6 + 0.95 + 0.7) / 3)
    assert grid[0.01]["val_mean"] == pytest.approx(0.8)
    assert a["lr_selection"]["a"]["chosen_lr"] == 0.01
    assert a["arms"]["a"]["n_failed"] == 0


def test_failed_runs_count_as_the_worst_value_and_are_reported():
    units = []
    for s in SEEDS:
        units.append(unit("a", s, test_accuracy=0.9 - s / 100))
        b = unit("b", s, test_accuracy=0.95)
        if s == 2:
            b["metrics"].update(diverged=1.0, test_accuracy=None)
        units.append(b)
    a = analyze(stored(units, [claim()]))
    c = a["comparisons"][0]
    assert c["failed_treatment"] == 1 and a["arms"]["b"]["n_failed"] == 1
    assert c["values_treatment"] == pytest.approx([0.95, 0.95, 0.88])  # worst seen: 0.88
    assert c["n_pairs"] == 3


def test_premise_not_met_replaces_the_verdict_and_gives_the_numbers():
    units = [unit(arm, s, test_accuracy=acc + s / 100, test_confidence=conf)
             for s in SEEDS for arm, acc, conf in (("a", 0.9, 0.8), ("b", 0.95, 0.9))]
    over = {"text": "the baseline is over-confident", "arm": "a", "metric": "test_confidence",
            "op": ">", "value": None, "than_arm": None, "than_metric": "test_accuracy"}
    a = analyze(stored(units, [claim()], premises=[over]))
    assert a["comparisons"][0]["verdict"] == "supported"  # the comparison itself is kept
    assert a["premises_met"] is False and a["verdict"] == "premise not met"
    p = a["premises"][0]
    assert p["holds"] is False and p["mean_diff"] == pytest.approx(0.8 - 0.91)
    assert "0.8" in p["numbers"] and "test_accuracy" in p["numbers"]
    chance = {"text": "learns", "arm": "a", "metric": "test_accuracy", "op": ">", "value": 0.2,
              "than_arm": None, "than_metric": None}
    a = analyze(stored(units, [claim()], premises=[chance]))
    assert a["premises_met"] is True and a["verdict"] == "supported"
    tips = tip_verdicts([{"id": "exp", "tips": ["t1"], "analysis": analyze(
        stored(units, [claim()], premises=[over]))}])
    assert tips[0]["verdict"] == "premise not met"


def test_experiment_and_tip_verdicts_from_comparisons_naming_tips():
    units = []
    for s in SEEDS:
        units += [unit("a", s, test_accuracy=0.8 + s / 100, test_loss=0.5 + s / 10, params=100.0),
                  unit("b", s, test_accuracy=0.9 + s / 100 + s * 1e-3, test_loss=0.5 + s / 9,
                       params=50.0)]
    claims = [claim(tips=["t1"]), claim("params", "lower", tips=["t2"]),
              claim("test_loss", "lower", tips=["t2"]), claim("test_loss", "lower", primary=False)]
    a = analyze(stored(units, claims))
    assert [c["verdict"] for c in a["comparisons"]] == ["supported", "computed",
                                                        "inconclusive", "inconclusive"]
    assert a["comparisons"][1]["kind"] == "computed"
    assert a["verdict"] == "partly supported"
    result = {"id": "exp", "tips": ["t1", "t2"], "analysis": a}
    rows = {r["tip"]: r for r in tip_verdicts([result], ["t1", "t2", "t3"])}
    assert rows["t1"]["verdict"] == "supported"
    assert rows["t2"]["verdict"] == "partly supported"
    assert rows["t3"]["verdict"] == "not measured" and rows["t3"]["comparisons"] == []
    # contradicted primary comparisons make the experiment contradicted
    flipped = analyze(stored(units, [claim(direction="lower")]))
    assert flipped["verdict"] == "contradicted"
    # a crashed run makes it an error and keeps it out of the tips
    broken = stored(units, claims)
    broken["units"]["a/s0"] = {"arm": "a", "seed": 0, "status": "error", "error": "boom"}
    b = analyze(broken)
    assert b["verdict"] == "error" and b["errors"][0]["error"] == "boom"
    assert tip_verdicts([{"id": "exp", "tips": ["t1"], "analysis": b}], ["t1"])[0][
        "verdict"] == "not measured"


def test_holm_across_a_run():
    units = [unit(arm, s, test_accuracy=v + s / 10 + (0.01 * s if arm == "b" else 0))
             for s in SEEDS for arm, v in (("a", 0.5), ("b", 0.52))]
    r1 = {"id": "e1", "analysis": analyze(stored(units, [claim(), claim(primary=False)]))}
    r2 = {"id": "e2", "analysis": analyze(stored(units, [claim()]))}
    assert apply_holm([r1, r2]) == 2
    c = r1["analysis"]["comparisons"][0]
    assert c["p_holm"] == pytest.approx(min(1.0, 2 * c["p_value"]))
    assert "p_holm" not in r1["analysis"]["comparisons"][1]  # secondary: not in the family


def _exp(**kw):
    b = Budget(seeds=1, steps=1)
    args = dict(id="e", tips=("t1", "t2"), title="e", claim="c", base={},
                arms=(Arm("a"), Arm("b", {"optimizer": {"name": "adam"}})),
                claims=(Claim("b", "a", "test_accuracy", "higher"),),
                budgets={"smoke": b, "quick": b, "full": b})
    return Experiment(**(args | kw))


def test_experiment_declares_grids_premises_and_tips():
    e = _exp(lr_grid={"b": (1e-3, 1e-2)},
             premises=(Premise("learns", "a", "test_accuracy", ">", value=0.2),),
             claims=(Claim("b", "a", "test_accuracy", "higher", tips=("t2",)),))
    assert [a.name for a in e.run_arms] == ["a", "b@lr=0.001", "b@lr=0.01"]
    recipe = e.recipe("b@lr=0.01", 0, "smoke")
    assert recipe["optimizer"] == {"name": "adam", "lr": 0.01}
    config = e.config("quick")
    assert config["claims"][0]["tips"] == ["t2"]
    assert config["lr_grid"] == {"b": [1e-3, 1e-2]}
    assert [a["name"] for a in config["arms"]] == ["a", "b@lr=0.001", "b@lr=0.01"]
    # smoke (tests, seconds) runs the first rate of each grid only
    assert [a["name"] for a in e.config("smoke")["arms"]] == ["a", "b@lr=0.001"]
    assert _exp().config("smoke")["claims"][0]["tips"] == ["t1", "t2"]  # default: all tips
    with pytest.raises(ValueError, match="does not list"):
        _exp(claims=(Claim("b", "a", "test_accuracy", "higher", tips=("other",)),))
    with pytest.raises(ValueError, match="premise"):
        _exp(premises=(Premise("x", "nope", "test_accuracy", ">", value=0.2),))
    with pytest.raises(ValueError, match="exactly one"):
        Premise("x", "a", "test_accuracy", ">")
    with pytest.raises(ValueError, match="distinct and positive"):
        _exp(lr_grid=(0.1, 0.1))
    with pytest.raises(ValueError, match="direction"):
        Claim("b", "a", "test_accuracy", "up")  # type: ignore[arg-type]


def test_every_experiment_has_enough_seeds_and_valid_declarations():
    from dltricks.lab.catalog import tip_ids
    from dltricks.lab.experiment import list_experiments

    known = set(tip_ids())
    for e in list_experiments():
        assert e.budget("quick").seeds >= 3, e.id
        assert e.budget("full").seeds >= 8, e.id
        for c in e.config("smoke")["claims"]:
            assert c["tips"] and set(c["tips"]) <= known, (e.id, c)
        for rates in (e.lr_grid.values() if isinstance(e.lr_grid, dict) else [e.lr_grid]):
            assert len(rates) <= 3, e.id  # grids stay small: the quick profile pays for them


def test_catalog_lists_existing_components_and_marks_the_rest_planned():
    from dltricks.lab.catalog import TIPS, component_status, get_tip

    assert component_status("nn.pool(SPP)") == "exists"
    assert component_status("models.small_cnn(residual)") == "exists"  # a registered model
    assert component_status("train(precision)") == "exists"
    assert component_status("advisor") == "planned"
    assert component_status("methods.no_such_method") == "planned"
    assert component_status("benchmarks/mamba_edge.py(measured)") == "exists"
    assert component_status("benchmarks/no_such_benchmark.py") == "planned"
    # the int8 size and latency measurements are linked to the compression tip
    assert any(c.startswith("compare.edge") and component_status(c) == "exists"
               for c in get_tip("compress-size-latency").components)
    statuses = {component_status(c) for t in TIPS for c in t.components}
    assert statuses <= {"exists", "planned"}
