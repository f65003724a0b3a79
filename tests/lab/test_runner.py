"""Runner: every experiment in the smoke profile, resume, crash isolation, report, user data."""

import json
from pathlib import Path

import numpy as np
import pytest

from dltricks.lab.experiment import Arm, Budget, Claim, Experiment, list_experiments
from dltricks.lab.report import write_report
from dltricks.lab.runner import LabInterrupted, _Counter, data_config, run_experiment, run_lab


def tiny(id: str = "tiny", model: str = "mlp", seeds: int = 2) -> Experiment:
    b = Budget(seeds=seeds, steps=2)
    return Experiment(
        id=id, tips=("optimizers-faster",), title="tiny", claim="adam beats sgd",
        base={"model": {"name": model, "kwargs": {"depth": 1, "width": 8}},
              "data": {"name": "digits", "batch_size": 32},
              "optimizer": {"name": "sgd", "lr": 0.01}},
        arms=(Arm("sgd"), Arm("adam", {"optimizer": {"name": "adam"}})),
        claims=(Claim("adam", "sgd", "mean_train_loss", "lower"),),
        budgets={"smoke": b, "quick": b, "full": b},
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    summary = run_lab(list_experiments(), "smoke", out, progress=False)
    return out, summary


def test_every_experiment_runs_in_smoke(smoke_run):
    out, summary = smoke_run
    ids = [e.id for e in list_experiments()]
    assert [r["id"] for r in summary["experiments"]] == ids
    for r in summary["experiments"]:
        assert r["status"] == "complete", (r["id"], r["analysis"]["errors"])
        # one seed: no interval, so no statistical verdict; only exact (computed) comparisons
        # decide, and a 3-step run may fail its premises (e.g. "learns above chance")
        assert all(c["verdict"] == "insufficient" or c["kind"] == "computed"
                   for c in r["analysis"]["comparisons"]), r["id"]
        exp = next(e for e in list_experiments() if e.id == r["id"])
        for u in r["units"].values():
            if exp.unit is None:  # a Trainer run always has a training curve
                assert u["metrics"]["mean_train_loss"] is not None
            else:  # a function unit reports its own metrics (untrained arms have no loss)
                assert u["metrics"] and u["status"] == "ok"
    html = (out / "report.html").read_text()
    for i in ids:
        assert f'id="tip-{i}"' in html
    assert html.count("data:image/png;base64,") == len(ids)
    stored = json.loads((out / "results.json").read_text())
    assert {s["verdict"] for s in stored["summary"]} <= {
        "insufficient", "premise not met", "computed", "partly supported", "contradicted",
        "conflicting"}
    assert (out / "report.md").read_text().count("Reproduce: `dltricks lab run --tips") == len(ids)


def test_probes_are_recorded(smoke_run):
    _, summary = smoke_run
    by_id = {r["id"]: r for r in summary["experiments"]}
    unit = next(iter(by_id["activations"]["units"].values()))
    grads = unit["probes"]["grad_by_depth"]
    assert len(grads["layers"]) == 9 and all(v is not None for v in grads["mean_norm"])
    rel = next(iter(by_id["label_smoothing"]["units"].values()))["probes"]["reliability"]
    assert len(rel["confidence"]) == 10 and 0 <= rel["ece"] <= 1


def test_report_rebuilds_from_stored_results(smoke_run, tmp_path):
    out, summary = smoke_run
    (out / "report.html").unlink()
    again = write_report(out)
    assert (out / "report.html").is_file()
    assert [s["verdict"] for s in again["summary"]] == [s["verdict"] for s in summary["summary"]]


def test_resume_after_interruption_reuses_finished_units(tmp_path):
    exp = tiny()
    with pytest.raises(LabInterrupted):
        run_experiment(exp, "smoke", tmp_path, counter=_Counter(max_units=3))
    partial = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert partial["status"] == "partial" and len(partial["units"]) == 3
    counter = _Counter(None)
    done = run_experiment(exp, "smoke", tmp_path, counter=counter)
    assert (counter.ran, counter.reused) == (1, 3)
    assert done["status"] == "complete" and len(done["units"]) == 4
    for name, unit in partial["units"].items():
        assert done["units"][name]["seconds"] == unit["seconds"]  # not retrained
    counter = _Counter(None)
    run_experiment(exp, "smoke", tmp_path, counter=counter)
    assert (counter.ran, counter.reused) == (0, 4)
    # a changed config invalidates the stored results
    counter = _Counter(None)
    run_experiment(tiny(seeds=1), "smoke", tmp_path, counter=counter)
    assert (counter.ran, counter.reused) == (2, 0)


def test_a_changed_claim_reanalyses_stored_units_without_training(tmp_path):
    """Claims and premises decide the verdict, not the runs: changing them reuses every stored
    unit and the new analysis reads the new claims; a changed recipe or another package
    version (the stored file's own) trains again."""
    from dataclasses import replace

    first = run_experiment(tiny(), "smoke", tmp_path)
    assert [c["metric"] for c in first["analysis"]["comparisons"]] == ["mean_train_loss"]
    stored = json.loads((tmp_path / "results" / "tiny.json").read_text())
    stored.pop("units_key")  # as written before the key was split: recomputed from its config
    (tmp_path / "results" / "tiny.json").write_text(json.dumps(stored))
    new_claims = replace(tiny(), claims=(Claim("adam", "sgd", "final_train_loss", "lower"),))
    counter = _Counter(None)
    again = run_experiment(new_claims, "smoke", tmp_path, counter=counter)
    assert (counter.ran, counter.reused) == (0, 4)
    assert again["key"] != first["key"] and again["units_key"] == first["units_key"]
    assert [c["metric"] for c in again["analysis"]["comparisons"]] == ["final_train_loss"]
    reread = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert reread["units"] == stored["units"]  # the stored runs, untouched
    # another package version: the stored units are not reused
    stored = json.loads((tmp_path / "results" / "tiny.json").read_text())
    stored["versions"]["dltricks"] = "0.0.0-old"
    (tmp_path / "results" / "tiny.json").write_text(json.dumps(stored))
    counter = _Counter(None)
    run_experiment(new_claims, "smoke", tmp_path, counter=counter)
    assert (counter.ran, counter.reused) == (4, 0)
    # a changed recipe (the baseline's learning rate): trained again
    other_lr = replace(new_claims, base={**tiny().base, "optimizer": {"name": "sgd", "lr": 0.02}})
    counter = _Counter(None)
    run_experiment(other_lr, "smoke", tmp_path, counter=counter)
    assert (counter.ran, counter.reused) == (4, 0)


def test_a_crashing_experiment_does_not_stop_the_others(tmp_path):
    bad = tiny("broken", model="no_such_model")
    summary = run_lab([bad, tiny("fine")], "smoke", tmp_path, progress=False)
    by_id = {r["id"]: r for r in summary["experiments"]}
    assert by_id["broken"]["status"] == "error"
    assert by_id["broken"]["analysis"]["verdict"] == "error"
    assert "no_such_model" in by_id["broken"]["analysis"]["errors"][0]["error"]
    assert by_id["fine"]["status"] == "complete"
    assert by_id["fine"]["analysis"]["verdict"] in ("supported", "contradicted", "inconclusive")
    assert "error in sgd seed 0" in (tmp_path / "report.md").read_text()


def test_divergence_is_an_outcome_not_a_crash(tmp_path):
    from dataclasses import replace

    exp = replace(tiny("boom", seeds=1), divergence_ok=True,
                  base={**tiny().base, "optimizer": {"name": "sgd", "lr": 1e30}})
    res = run_experiment(exp, "smoke", tmp_path)
    assert res["status"] == "complete"
    assert res["units"]["sgd/s0"]["metrics"]["diverged"] == 1.0


def test_user_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    exps = [e for e in list_experiments() if e.id in ("optimizers", "batchnorm")]
    summary = run_lab(exps, "smoke", tmp_path / "out", data_path=tmp_path / "d.npz",
                      progress=False)
    # batchnorm needs images; the MLP experiment runs on the arrays
    assert [r["id"] for r in summary["experiments"]] == ["optimizers"]
    assert summary["experiments"][0]["status"] == "complete"
    recipes = summary["experiments"][0]["config"]["recipes"]
    assert recipes and all(r["data"]["name"] == "arrays" for r in recipes.values())
    with pytest.raises(ValueError, match="image folder"):
        data_config(Path(tmp_path / "nope.txt"))
