"""Learning-paradigms II experiments: fair arms (learning-rate grids selected on validation data),
units that read the grid's rate and return the validation metric, validation data disjoint from
the test data, and the OOD premise of the uncertainty experiment."""

import math

import pytest
import torch

import dltricks.lab.experiments  # noqa: F401  (registers the experiments)
from dltricks.lab.experiment import get_experiment, recipe_lr
from dltricks.lab.experiments import paradigms_ii as p2
from dltricks.lab.verdicts import analyze

#: arms that are not trained by gradient descent and so run once, without a grid
GRIDLESS = {"fewshot_heldout": {"raw"}, "zeroshot_digits": {"chance"},
            "maml_sinusoid": {"scratch"}, "uncertainty_mnist1d": set(),
            "gp_regression_coverage": {"gp"}}


@pytest.mark.parametrize("exp_id", sorted(GRIDLESS))
def test_every_trained_arm_gets_a_grid_selected_on_a_validation_metric(exp_id):
    exp = get_experiment(exp_id)
    assert {a.name for a in exp.arms if not exp.grid_for(a.name, "quick")} == GRIDLESS[exp_id]
    for a in exp.arms:
        if a.name not in GRIDLESS[exp_id]:
            assert len(exp.grid_for(a.name, "quick")) >= 2, a.name
            assert len(exp.grid_for(a.name, "full")) >= 2, a.name
    assert exp.lr_key == "optimizer.lr"
    assert exp.lr_select.startswith("val_")  # never a test metric
    assert exp.budget("quick").seeds >= 3
    # each variant's recipe carries its rate where the unit reads it
    for arm in exp.run_arms_for("quick"):
        recipe = exp.recipe(arm, 0, "quick")
        if "@lr=" in arm.name:
            assert recipe["optimizer"]["lr"] == pytest.approx(float(arm.name.split("@lr=")[1]))
        assert recipe_lr(recipe) > 0
    # compared arms: a claim between two arms never pits a tuned arm against an untuned
    # trained one
    for c in exp.claims:
        for arm in (c.treatment, c.baseline):
            assert arm in GRIDLESS[exp_id] or exp.grid_for(arm, "quick")


# one trained arm per experiment, run at smoke size at two rates
UNIT_CASES = [("fewshot_heldout", "prototypical", (1e-3, 3e-2)),
              ("zeroshot_digits", "attributes", (1e-3, 3e-2)),
              ("maml_sinusoid", "maml", (3e-3, 0.1)),
              ("uncertainty_mnist1d", "plain", (1e-3, 3e-2)),
              ("gp_regression_coverage", "net", (3e-3, 0.1)),
              ("gp_regression_coverage", "dkl", (0.01, 0.2))]


@pytest.mark.parametrize(("exp_id", "arm", "rates"), UNIT_CASES)
def test_units_train_at_the_rate_of_the_recipe_and_return_the_selection_metric(
        exp_id, arm, rates, tmp_path):
    exp = get_experiment(exp_id)
    torch.set_num_threads(1)
    outs = []
    for i, lr in enumerate(rates):
        recipe = exp.recipe(arm, 0, "smoke")
        recipe["optimizer"]["lr"] = lr
        run_dir = tmp_path / str(i)
        run_dir.mkdir()
        outs.append(exp.unit(recipe, run_dir))
    for out in outs:
        assert exp.lr_select in out and math.isfinite(out[exp.lr_select])
    # the second step starts from weights the first step moved by lr: different losses
    assert outs[0]["mean_train_loss"] != pytest.approx(outs[1]["mean_train_loss"], rel=1e-6)


def test_a_unit_without_a_learning_rate_says_so():
    with pytest.raises(ValueError, match=r"recipe\['optimizer'\]\['lr'\]"):
        recipe_lr({"optimizer": {}})
    with pytest.raises(ValueError, match="positive"):
        recipe_lr({"optimizer": {"lr": 0.0}})


def test_gap_regression_validation_points_avoid_the_gap_and_leave_train_and_test_unchanged():
    a = p2._gap_regression(3, 60, 400, 0)
    b = p2._gap_regression(3, 60, 400, 40)
    for u, v in zip(a[:4], b[:4], strict=True):
        assert torch.equal(u, v)
    x_va = b[4]
    assert len(x_va) == 40 and bool((x_va.abs() >= p2.GAP).all())
    assert bool((x_va.abs() <= 4).all())
    assert bool((b[2].abs() < p2.GAP).any())  # the test inputs do cover the gap


def test_fewshot_validation_and_test_episodes_share_no_sample():
    from dltricks.data import create_dataset

    d = create_dataset("mnist1d", seed=0, num_samples=500)
    (vx, vy), (tx, ty) = p2.fewshot_pools(d)
    assert len(vy) + len(ty) == len(d.train.y) + len(d.val.y) + len(d.test.y)
    # no validation signal appears among the test signals
    dist = torch.cdist(vx.flatten(1), tx.flatten(1))
    assert float(dist.min()) > 0


def _stored(exp_id, values):
    """A stored result of ``exp_id``'s quick config whose units report ``values(arm, seed)``."""
    exp = get_experiment(exp_id)
    config = exp.config("quick")
    units = {}
    for a in config["arms"]:
        for s in config["seeds"]:
            units[f"{a['name']}/s{s}"] = {"arm": a["name"], "seed": s, "status": "ok",
                                          "metrics": {"diverged": 0.0, **values(a, s)},
                                          "curves": {}, "seconds": 1.0}
    return {"id": exp_id, "status": "complete", "tips": list(exp.tips), "config": config,
            "units": units}


@pytest.mark.parametrize(("plain_auroc", "met"), [(0.45, False), (0.62, True)])
def test_uncertainty_ood_premise_decides_between_a_verdict_and_premise_not_met(plain_auroc,
                                                                                  met):
    def values(arm, seed):
        base = arm["base"]
        lr = arm["lr"]
        good = lr == p2.UNC_LRS[base][0]  # the first rate of each grid wins on validation
        out = {"val_nll": 0.5 if good else 0.9, "accuracy": 0.8, "confidence": 0.9,
               "ece": 0.10 if base == "plain" else 0.05 - 0.001 * seed,
               "nll": 0.6, "ood_auroc": plain_auroc if base == "plain" else 0.7}
        if not good:
            out["ece"] = 0.0  # a rate not selected must not decide the verdict
        return out

    a = analyze(_stored("uncertainty_mnist1d", values))
    ood = [p for p in a["premises"] if p["metric"] == "ood_auroc"]
    assert len(ood) == 1 and ood[0]["holds"] is met
    assert {b: s["chosen_lr"] for b, s in a["lr_selection"].items()} == {
        b: rates[0] for b, rates in p2.UNC_LRS.items()}
    if met:
        assert a["verdict"] == "supported"
    else:
        assert a["verdict"] == "premise not met"
        assert "0.45" in ood[0]["numbers"]
