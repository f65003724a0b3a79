"""``dltricks compare`` end to end in a tiny profile: sections, report, reuse, errors."""

import json

import pytest
from typer.testing import CliRunner

import dltricks.compare.runner as runner
from dltricks.cli.main import app


@pytest.fixture()
def tiny(monkeypatch):
    monkeypatch.setitem(runner.PROFILES, "smoke",
                        # a generous point budget: the first point compiles the CPU scan,
                        # seconds on a loaded 2-core machine, and both lengths must be measured
                        runner.CompareProfile(32, 64, 600.0, 1, (16, 32), 2, "smoke"))
    monkeypatch.setattr(runner, "ACCURACY_EXPERIMENTS", ("mvt_mqar",))


def test_smoke_compare_writes_a_report_and_reuses_sections(tmp_path, tiny):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", "--profile", "smoke", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["sections"]) == {"complexity", "inference", "accuracy", "edge"}
    for name, s in summary["sections"].items():
        assert s["status"] == "ok", (name, s.get("error"))
    cx = summary["sections"]["complexity"]["result"]
    assert cx["families"]["mamba"]["lengths"] == [32, 64]
    assert abs(cx["families"]["mamba"]["params"] - cx["families"]["transformer"]["params"]) \
        < 0.01 * cx["families"]["mamba"]["params"]
    inf = summary["sections"]["inference"]["result"]["families"]
    assert inf["mamba"]["state_mib"][0] == inf["mamba"]["state_mib"][1]  # constant state
    assert inf["transformer"]["state_mib"][1] > inf["transformer"]["state_mib"][0]  # KV grows
    html = (out / "report.html").read_text()
    # complexity, inference, edge, mqar's lab figure and its learning curves (steps, seconds)
    assert html.count("data:image/png;base64,") == 5
    assert 'alt="mvt_mqar_curves"' in html
    assert "The guide&#x27;s table, measured" in html or "The guide's table" in html
    from dltricks.lab.verdicts import TIP_VERDICTS

    assert {c["verdict"] for c in summary["claims"]} <= {
        *TIP_VERDICTS, "error"}
    # a rerun reuses every section (keys match: files untouched) and rebuilds the same claims
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "sections").glob("*.json")}
    res = CliRunner().invoke(app, ["compare", "--profile", "smoke", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "sections").glob("*.json")}
    again = json.loads((out / "results.json").read_text())
    assert [c["evidence"] for c in again["claims"]] == [c["evidence"] for c in summary["claims"]]
    res = CliRunner().invoke(app, ["compare", "--report-only", "--out", str(out)])
    assert res.exit_code == 0, res.output


def test_bad_arguments_are_clear_errors(tmp_path):
    res = CliRunner().invoke(app, ["compare", "mamba", "gpt", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "Unknown model family 'gpt'" in res.output
    res = CliRunner().invoke(app, ["compare", "--profile", "huge", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "Unknown profile 'huge'" in res.output
    res = CliRunner().invoke(app, ["compare", "mamba", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "at least one other family" in res.output
    res = CliRunner().invoke(app, ["compare", "--report-only", "--out", str(tmp_path / "no")])
    assert res.exit_code == 2 and "No stored sections" in res.output
    res = CliRunner().invoke(app, ["compare", "--list"])
    assert res.exit_code == 0 and "transformer_abs" in res.output
    res = CliRunner().invoke(app, ["compare", "--experiments", "mvt_sorting", "--out",
                                   str(tmp_path)])
    assert res.exit_code == 2 and "Unknown accuracy experiment(s) ['mvt_sorting']" in res.output
    res = CliRunner().invoke(app, ["compare", "--workers", "0", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "workers must be at least 1" in res.output


def test_sections_option_runs_only_those_and_keeps_stored_ones(tmp_path, tiny):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", "--profile", "smoke", "--out", str(out),
                                   "--sections", "inference"])
    assert res.exit_code == 0, res.output
    assert [p.stem for p in (out / "sections").glob("*.json")] == ["inference"]
    res = CliRunner().invoke(app, ["compare", "--profile", "smoke", "--out", str(out),
                                   "--sections", "edge"])
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["sections"]) == {"inference", "edge"}
    res = CliRunner().invoke(app, ["compare", "--out", str(out), "--sections", "speed"])
    assert res.exit_code == 2 and "Unknown section" in res.output


@pytest.mark.gpu
def test_cuda_timing_sections(tmp_path, tiny):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    res = CliRunner().invoke(app, ["compare", "--profile", "smoke", "--device", "cuda",
                                   "--sections", "complexity,inference", "--out",
                                   str(tmp_path)])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["sections"]["complexity"]["result"]["device"] == "cuda"
