"""Typed stored results, and the independent recomputation of every verdict of a small lab run."""

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dltricks.lab.experiment import Arm, Budget, Claim, Experiment, Premise
from dltricks.lab.report import write_report
from dltricks.lab.results import (
    ExperimentResult,
    ResultError,
    dump_result,
    load_result_file,
    parse_result,
)
from dltricks.lab.runner import run_experiment

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "recompute_verdicts.py"
B = Budget(seeds=3, steps=4)


def _mlp(width: int) -> dict:
    return {"model": {"kwargs": {"width": width}}}


def tiny_experiments() -> list[Experiment]:
    base = {"model": {"name": "mlp", "kwargs": {"depth": 1, "width": 8}},
            "data": {"name": "digits", "batch_size": 32},
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}}
    budgets = {"smoke": B, "quick": B, "full": B}
    fair = Experiment(
        id="fair", tips=("optimizers-faster", "bn-stabilizes"), title="fair",
        claim="adam beats sgd; the smaller net has fewer parameters", base=base,
        arms=(Arm("sgd", _mlp(16)), Arm("adam", {"optimizer": {"name": "adam"}, **_mlp(8)})),
        claims=(Claim("adam", "sgd", "test_accuracy", "higher", tips=("optimizers-faster",)),
                Claim("adam", "sgd", "params", "lower", tips=("bn-stabilizes",)),
                Claim("adam", "sgd", "diverged", "lower", primary=False)),
        premises=(Premise("sgd learns", "sgd", "test_accuracy", ">", value=0.0),),
        lr_grid={"sgd": (0.01, 0.1), "adam": (1e-3, 1e-2)},
        evaluators=("cost",), budgets=budgets)
    unmet = Experiment(
        id="unmet", tips=("optimizers-faster",), title="unmet", claim="x", base=base,
        arms=(Arm("sgd"), Arm("adam", {"optimizer": {"name": "adam", "lr": 1e-3}})),
        claims=(Claim("adam", "sgd", "mean_train_loss", "lower"),),
        premises=(Premise("impossible", "sgd", "test_accuracy", ">", value=1.5),),
        budgets=budgets)
    return [fair, unmet]


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab")
    for exp in tiny_experiments():  # quick: smoke would run the first rate of each grid only
        run_experiment(exp, "quick", out)
    summary = write_report(out)
    return out, summary


def test_stored_results_validate_and_round_trip(lab_run):
    out, _ = lab_run
    r = load_result_file(out / "results" / "fair.json")
    assert isinstance(r, ExperimentResult)
    assert len(r.units) == 12 and all(u.status == "ok" for u in r.units.values())
    unit = r.units["adam@lr=0.001/s0"]
    assert unit.metrics["test_accuracy"] is not None and not unit.failed
    again = parse_result(json.loads(dump_result(r)))
    assert again.model_dump() == r.model_dump()
    assert r["id"] == "fair" and r.get("nope") is None  # dict-style reads still work


def test_invalid_results_fail_loudly(tmp_path, lab_run):
    out, _ = lab_run
    data = json.loads((out / "results" / "fair.json").read_text())
    bad = copy.deepcopy(data)
    del bad["units"]["sgd@lr=0.01/s0"]["seed"]
    with pytest.raises(ResultError, match=re.escape("units.sgd@lr=0.01/s0.seed")):
        parse_result(bad)
    bad = copy.deepcopy(data)
    bad["status"] = "finished"
    with pytest.raises(ResultError, match="status"):
        parse_result(bad)
    torn = tmp_path / "torn.json"
    torn.write_text(json.dumps(data)[:200])
    with pytest.raises(ResultError, match="not valid JSON"):
        load_result_file(torn)


def test_report_opens_with_tip_verdicts_and_the_forest_plot(lab_run):
    out, summary = lab_run
    assert "paired" in summary["verdict_rule"]
    by_tip = {t["tip"]: t for t in summary["tips"]}
    # params is arithmetic: "computed", never "supported"
    assert by_tip["bn-stabilizes"]["verdict"] == "computed"
    exps = {r["id"]: r for r in summary["experiments"]}
    assert exps["unmet"]["analysis"]["verdict"] == "premise not met"
    sel = exps["fair"]["analysis"]["lr_selection"]
    assert set(sel) == {"sgd", "adam"} and sel["sgd"]["chosen_lr"] in (0.01, 0.1)
    html = (out / "report.html").read_text()
    assert html.index("Verdict per tip") < html.index("Every primary comparison") < html.index(
        'id="tip-fair"')
    assert (out / "figures" / "forest.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "premise not met" in md and "impossible" in md and "lr 0.01" in md
    assert "exact (computed)" in md and "Holm" in md and "MDE" in md
    assert "advisor (planned)" in md  # catalog honesty: a component that does not exist
    assert "measured in the lab" not in md.replace("not measured in the lab", "")
    assert "<script" not in html.split("<body>", 1)[1] or "&lt;" in html  # autoescaped


def test_independent_script_agrees_with_every_stored_verdict(lab_run, tmp_path):
    out, _ = lab_run
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 disagreements" in proc.stdout
    # the script does not import dltricks: it is a second computation, not the same code
    imports = [line for line in SCRIPT.read_text().splitlines()
               if line.startswith(("import ", "from "))]
    assert imports and not any("dltricks" in line for line in imports)
    # and it catches a verdict that does not follow from the stored values
    spec = importlib.util.spec_from_file_location("recompute_verdicts", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tampered = json.loads((out / "results.json").read_text())
    tampered["experiments"][0]["analysis"]["comparisons"][0]["verdict"] = "supported" if \
        tampered["experiments"][0]["analysis"]["comparisons"][0]["verdict"] != "supported" \
        else "contradicted"
    tampered["tips"][0]["verdict"] = "conflicting"
    problems = mod.recompute(tampered)
    assert len(problems) == 2
    path = tmp_path / "results.json"
    path.write_text(json.dumps(tampered))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "2 disagreements" in proc.stdout


def test_run_summary_counts_units_cost_and_verdicts_of_a_run(lab_run, tmp_path):
    """tools/run_summary.py: one row per experiment with the stored verdict, the units done of
    those planned and the sum of their seconds; exit 2 and a sentence on a non-run folder."""
    out, _ = lab_run
    summary_script = ROOT / "tools" / "run_summary.py"
    proc = subprocess.run([sys.executable, str(summary_script), str(out), "--sort", "name"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    for exp_id, r in results.items():
        row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| `{exp_id}`"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        n = len(r["config"]["seeds"]) * len(r["config"]["arms"])
        assert cells[3] == f"{n}/{n}"
        assert cells[4] == f"{sum(u['seconds'] for u in r['units'].values()):.0f}"
        assert cells[6] == r["analysis"]["verdict"]
    assert f"{len(results)} experiments ({len(results)} complete)" in proc.stdout
    # results without recorded CPU times show a dash, not 0, and the total says so
    old = tmp_path / "old"
    (old / "results").mkdir(parents=True)
    for exp_id, r in results.items():
        for u in r["units"].values():
            u.pop("cpu_seconds", None)
        (old / "results" / f"{exp_id}.json").write_text(json.dumps(r))
        break
    proc = subprocess.run([sys.executable, str(summary_script), str(old)],
                          capture_output=True, text=True, timeout=120)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| `"))
    assert [c.strip() for c in row.strip("|").split("|")][5] == "—"
    assert "(1 experiment(s) without recorded CPU times)" in proc.stdout
    bad = subprocess.run([sys.executable, str(summary_script), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a lab run folder" in bad.stderr
    assert "Traceback" not in bad.stderr
