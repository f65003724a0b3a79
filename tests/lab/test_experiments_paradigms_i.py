"""Paradigms I experiments (distillation, transfer, semi-supervised, domain adaptation) compare
arms at their best learning rates: every training arm has a grid (two rates in quick, three in
full), the rate is selected on validation, function units train at the rate the runner sets,
and the report shows the grid and the chosen rates."""

from __future__ import annotations

import json

import pytest
import yaml

import dltricks.lab.experiments  # noqa: F401  (registers the experiments)
from dltricks.lab.experiment import Arm, Claim, Experiment, get_experiment, variant_name
from dltricks.lab.experiments.paradigms_i import distill_unit, transfer_unit

PARADIGMS_I = ("distillation", "transfer", "transfer_minilm", "semi_supervised",
               "domain_adaptation")
#: arms that train nothing compared by a claim: fixed upper bounds of a premise
GRIDLESS = {"semi_supervised": {"full"}, "domain_adaptation": {"target"}}


@pytest.mark.parametrize("exp_id", PARADIGMS_I)
def test_every_compared_arm_has_a_validation_selected_grid(exp_id):
    exp = get_experiment(exp_id)
    assert exp.lr_key == "optimizer.lr"
    assert exp.lr_select == "val_accuracy" and exp.lr_select_mode == "max"
    gridless = {a.name for a in exp.arms if not exp.grid_for(a.name, "quick")}
    assert gridless == GRIDLESS.get(exp_id, set())
    compared = {arm for c in exp.claims for arm in (c.treatment, c.baseline)}
    assert not compared & gridless  # no claim compares an untuned arm
    for a in exp.arms:
        if a.name in gridless:
            continue
        quick, full = exp.grid_for(a.name, "quick"), exp.grid_for(a.name, "full")
        assert len(quick) == 2 and len(full) == 3 and set(quick) < set(full), a.name
        assert exp.grid_for(a.name, "smoke") == quick[:1]
    assert "Fair arms" in exp.notes
    assert exp.budget("quick").seeds >= 3 and exp.budget("full").seeds == 8


def test_config_lists_the_profile_grid():
    exp = get_experiment("domain_adaptation")
    quick, full = exp.config("quick"), exp.config("full")
    assert set(quick["lr_grid"]) == {"source_only", "dann", "self_training"}
    assert all(len(r) == 2 for r in quick["lr_grid"].values())
    assert all(len(r) == 3 for r in full["lr_grid"].values())
    names = [a["name"] for a in full["arms"]]
    assert len(names) == 3 * 3 + 1 and "target" in names
    for a in full["arms"]:  # every full variant resolves to a recipe at its rate
        if a["lr"] is not None:
            assert full["recipes"][a["name"]]["optimizer"]["lr"] == a["lr"]


def _tiny(**kw) -> Experiment:
    return Experiment(id="t", tips=(), title="t", claim="c", base={},
                      arms=(Arm("a"), Arm("b")), claims=(Claim("b", "a", "x", "higher"),), **kw)


def test_lr_grid_full_adds_rates_to_the_full_profile_only():
    exp = _tiny(lr_grid={"a": (0.1, 0.3)}, lr_grid_full={"a": (1.0,)})
    assert exp.grid_for("a", "smoke") == (0.1,)
    assert exp.grid_for("a", "quick") == (0.1, 0.3)
    assert exp.grid_for("a", "full") == exp.grid_for("a") == (0.1, 0.3, 1.0)
    assert exp.grid_for("b", "full") == ()
    assert [a.name for a in exp.run_arms_for("quick")] == ["a@lr=0.1", "a@lr=0.3", "b"]
    assert exp.arm(variant_name("a", 1.0)).resolve(10) == {"optimizer": {"lr": 1.0}}
    same = _tiny(lr_grid=(0.1, 0.3), lr_grid_full=(1.0,))
    assert same.grid_for("b", "full") == (0.1, 0.3, 1.0)
    with pytest.raises(ValueError, match="lr_grid_full names arm 'b', which has no lr_grid"):
        _tiny(lr_grid={"a": (0.1,)}, lr_grid_full={"b": (1.0,)})
    with pytest.raises(ValueError, match="distinct and positive"):
        _tiny(lr_grid={"a": (0.1, 0.3)}, lr_grid_full={"a": (0.3,)})


def _last_val(run_dir) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    return [r["accuracy"] for r in rows if r.get("split") == "val"][-1]


def test_function_units_train_at_the_rate_the_runner_sets(tmp_path):
    """A variant's recipe carries its rate; the unit trains at it and reports the last
    validation accuracy (what selects the rate), never a test number."""
    exp = get_experiment("transfer")
    arm = variant_name("lora_p10", 0.01)
    r = exp.recipe(arm, 0, "smoke")
    assert r["optimizer"]["lr"] == 0.01
    run_dir = tmp_path / "runs" / "transfer" / "lora_p10" / "s0"
    out = transfer_unit(r, run_dir)
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["optimizer"]["lr"] == 0.01
    assert out["val_accuracy"] == pytest.approx(_last_val(run_dir))
    assert out["test_accuracy"] is not None and out["trainable_params"] > 0


def test_distillation_gap_is_measured_against_the_best_alone_rate(tmp_path):
    exp = get_experiment("distillation")
    r = exp.recipe(variant_name("kd_T4", exp.grid_for("kd_T4", "quick")[1]), 0, "smoke")
    run_dir = tmp_path / "runs" / "distillation" / "kd_T4" / "s0"
    out = distill_unit(r, run_dir)
    cache = tmp_path / "runs" / "distillation" / "_cache"
    alones = sorted(cache.glob("student_alone-*"))
    assert len(alones) == 2  # one cached student-alone run per rate of its grid
    best = max(alones, key=_last_val)
    best_acc = json.loads((best / "summary.json").read_text())["test_last"]["accuracy"]
    assert out["alone_test_accuracy"] == pytest.approx(best_acc)
    assert out["val_accuracy"] == pytest.approx(_last_val(run_dir))


def test_report_shows_the_grid_and_the_chosen_rate_of_a_function_unit(tmp_path):
    from dltricks.lab.runner import run_lab

    run_lab([get_experiment("transfer")], "smoke", tmp_path, progress=False)
    res = json.loads((tmp_path / "results.json").read_text())
    (exp,) = [e for e in res["experiments"] if e["id"] == "transfer"]
    selection = exp["analysis"]["lr_selection"]
    assert set(selection) == {a.name for a in get_experiment("transfer").arms}
    assert all(s["chosen_lr"] is not None and s["selected_on_validation"]
               for s in selection.values())
    report = (tmp_path / "report.md").read_text()
    assert "**Learning rates** chosen per arm on validation (val_accuracy" in report
    assert "| LoRA adapters (r=4), 10% labels | " in report
