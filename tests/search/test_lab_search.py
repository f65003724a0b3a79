"""The search experiments run end to end in the smoke profile, report every claimed metric and
draw best-so-far curves that never go down."""

import pytest

from dltricks.lab.experiment import get_experiment
from dltricks.lab.runner import run_experiment


@pytest.mark.parametrize("exp_id", ["hparam_search", "nas_strategies"])
def test_search_experiments_smoke(tmp_path, exp_id):
    exp = get_experiment(exp_id)
    res = run_experiment(exp, "smoke", tmp_path)
    units = res["units"].values()
    assert len(units) == len(exp.arms) and all(u["status"] == "ok" for u in units)
    for claim in exp.claims:
        for arm in (claim.treatment, claim.baseline):
            values = res["analysis"]["arms"][arm]["metrics"][claim.metric]["values"]
            assert all(v is not None and 0 <= v <= 1 for v in values), (arm, claim.metric)
    for u in units:
        best = [p[1] for p in u["curves"]["val"]]
        assert best == sorted(best) and best[-1] == pytest.approx(u["metrics"]["best_val"])
    budget = exp.budget("smoke").steps
    search_arms = [u for u in units if u["arm"] not in ("default", "handmade")]
    assert all(len(u["curves"]["val"]) == budget for u in search_arms)  # equal budgets


def test_tips_are_measured():
    from dltricks.lab.catalog import catalog_status

    rows = {r["id"]: r for r in catalog_status()}
    for tip in ("hparam-search-methods", "hparam-explore", "nas-methods", "nas-automates"):
        assert rows[tip]["status"] == "measured", tip
