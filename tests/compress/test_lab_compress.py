"""The compression experiment in the smoke profile: every arm measured against its own float
model; size differences are decided as computed facts, never as statistical support."""

import pytest

from dltricks.lab.experiment import get_experiment
from dltricks.lab.runner import run_experiment


def test_compress_experiment_smoke(tmp_path):
    exp = get_experiment("compress_cnn")
    res = run_experiment(exp, "smoke", tmp_path)
    units = {u["arm"]: u["metrics"] for u in res["units"].values()}
    assert set(units) == {a.name for a in exp.arms}
    assert units["float"]["latency_ratio"] == 1.0 and units["float"]["accuracy_change"] == 0.0
    assert units["int8"]["size_bytes"] < 0.5 * units["float"]["size_bytes"]
    assert units["prune"]["params"] < 0.35 * units["float"]["params"]
    assert units["prune_int8"]["size_bytes"] < units["prune"]["size_bytes"]
    for arm in ("prune", "prune_random", "prune_int8"):
        assert 0 <= units[arm]["oneshot_accuracy"] <= 1
    for arm, m in units.items():  # every arm starts from the same float model of the seed
        assert m["float_accuracy"] == pytest.approx(units["float"]["test_accuracy"]), arm


def test_compression_tips_are_measured():
    from dltricks.lab.catalog import catalog_status

    rows = {r["id"]: r for r in catalog_status()}
    for tip in ("compress-size-latency", "compress-definitions"):
        assert rows[tip]["status"] == "measured", tip
