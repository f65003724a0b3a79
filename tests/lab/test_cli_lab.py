"""The ``lab`` typer app: list, run (errors and a tiny run), report."""

from typer.testing import CliRunner

from dltricks.cli.lab import lab_app, select_experiments

runner = CliRunner()


def test_list_shows_every_tip_and_status():
    from dltricks.lab.catalog import TIPS

    res = runner.invoke(lab_app, ["list"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert f"{len(TIPS)} tips:" in res.output
    assert "not measured" in res.output and "bn-stabilizes" in res.output


def test_unknown_tip_lists_valid_ids():
    import pytest

    with pytest.raises(ValueError, match="Experiments: activations"):
        select_experiments("nope", None)
    res = runner.invoke(lab_app, ["run", "--tips", "nope", "--profile", "smoke"])
    assert res.exit_code == 2


def test_select_by_tip_and_section():
    assert [e.id for e in select_experiments("clip-exploding", None)] == ["grad_clipping"]
    ids = {e.id for e in select_experiments(None, "Label Smoothing")}
    assert ids == {"label_smoothing"}


def test_run_and_report(tmp_path):
    out = tmp_path / "lab"
    res = runner.invoke(lab_app, ["run", "--tips", "batchnorm", "--profile", "smoke",
                                  "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and (out / "results" / "batchnorm.json").is_file()
    (out / "report.md").unlink()
    res = runner.invoke(lab_app, ["report", str(out)])
    assert res.exit_code == 0 and (out / "report.md").is_file()
    assert runner.invoke(lab_app, ["report", str(tmp_path / "missing")]).exit_code == 2
