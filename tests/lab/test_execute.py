"""Lab at scale: worker processes and Ray give the serial run's results; cache keys see the data."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dltricks.lab.experiment import Arm, Budget, Claim, Experiment
from dltricks.lab.runner import LabInterrupted, _Counter, data_config, run_experiment, run_lab


def tiny(id: str = "tiny_par", seeds: int = 2, steps: int = 3) -> Experiment:
    b = Budget(seeds=seeds, steps=steps)
    return Experiment(
        id=id, tips=("optimizers-faster",), title="tiny", claim="adam beats sgd",
        base={"model": {"name": "mlp", "kwargs": {"depth": 1, "width": 8}},
              "data": {"name": "digits", "batch_size": 32},
              "optimizer": {"name": "sgd", "lr": 0.01}},
        arms=(Arm("sgd"), Arm("adam", {"optimizer": {"name": "adam"}})),
        claims=(Claim("adam", "sgd", "mean_train_loss", "lower"),),
        budgets={"smoke": b, "quick": b, "full": b}, user_data="any",
    )


def _metrics(result):
    return {k: u["metrics"] for k, u in result["units"].items()}


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return run_experiment(tiny(), "smoke", tmp_path_factory.mktemp("serial"))


def test_workers_give_the_serial_results_metric_for_metric(serial, tmp_path):
    par = run_experiment(tiny(), "smoke", tmp_path, workers=2)
    assert list(par["units"]) == list(serial["units"])  # stored in the experiment's order
    assert _metrics(par) == _metrics(serial)
    same = json.dumps(par["analysis"]["comparisons"], sort_keys=True)  # NaN-safe equality
    assert same == json.dumps(serial["analysis"]["comparisons"], sort_keys=True)
    # two worker processes, neither of them this one
    pids = {u["worker"] for u in par["units"].values()}
    assert len(pids) == 2 and not pids & {serial["units"]["sgd/s0"]["worker"]}
    assert par["execution"] == {"workers": 2, "ray": None}
    assert int(par["machine"]["cores"]) >= 1 and "load_average" in par["machine"]


def test_workers_stop_at_max_units_and_resume(serial, tmp_path):
    with pytest.raises(LabInterrupted):
        run_experiment(tiny(), "smoke", tmp_path, workers=2, counter=_Counter(max_units=3))
    partial = json.loads((tmp_path / "results" / "tiny_par.json").read_text())
    assert partial["status"] == "partial" and len(partial["units"]) == 3
    counter = _Counter(None)
    done = run_experiment(tiny(), "smoke", tmp_path, workers=2, counter=counter)
    assert (counter.ran, counter.reused) == (1, 3)
    assert _metrics(done) == _metrics(serial)


def test_ray_local_cluster_gives_the_serial_results(serial, tmp_path):
    pytest.importorskip("ray")
    res = run_experiment(tiny(), "smoke", tmp_path, ray="local", workers=2)
    assert _metrics(res) == _metrics(serial)
    # the driver wrote the results; the tasks ran in temporary folders on their node
    assert all(u["run_dir"].startswith(str(tmp_path)) for u in res["units"].values())
    assert json.loads((tmp_path / "results" / "tiny_par.json").read_text())["status"] == \
        "complete"


def _arrays(path, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    np.savez(path, x=x, y=y)


def test_cache_key_sees_a_changed_file_under_the_same_path(tmp_path):
    data = tmp_path / "d.npz"
    _arrays(data, 300)
    out = tmp_path / "out"
    first = run_lab([tiny(seeds=1)], "smoke", out, data_path=data, progress=False)
    assert first["units_ran"] == 2
    again = run_lab([tiny(seeds=1)], "smoke", out, data_path=data, progress=False)
    assert (again["units_ran"], again["units_reused"]) == (0, 2)
    _arrays(data, 600)  # same path, new content
    changed = run_lab([tiny(seeds=1)], "smoke", out, data_path=data, progress=False)
    assert (changed["units_ran"], changed["units_reused"]) == (2, 0)
    assert data_config(data)["sha256"] != first["experiments"][0]["config"]["data"]["sha256"]


def test_small_user_dataset_adapts_the_batch_size(tmp_path):
    data = tmp_path / "small.npz"
    _arrays(data, 60)  # ~40 training samples: below the experiments' batch of 32 x 4
    res = run_lab([tiny(seeds=1)], "smoke", tmp_path / "out", data_path=data, progress=False)
    exp = res["experiments"][0]
    assert exp["status"] == "complete"
    bs = exp["config"]["recipes"]["sgd"]["data"]["batch_size"]
    assert 1 <= bs < 32
    forced = run_lab([tiny(seeds=1)], "smoke", tmp_path / "out2", data_path=data,
                     progress=False, batch_size=4)
    assert forced["experiments"][0]["config"]["recipes"]["sgd"]["data"]["batch_size"] == 4


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dltricks", "lab", "run", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_shows_failure_reasons_and_exits_nonzero_when_all_fail(tmp_path, monkeypatch):
    from dataclasses import replace

    from typer.testing import CliRunner

    import dltricks.cli.lab as cli_lab

    broken = replace(tiny("broken_model", seeds=1),
                     base={**tiny().base, "model": {"name": "no_such_model", "kwargs": {}}})
    monkeypatch.setattr(cli_lab, "select_experiments", lambda tips, section: [broken])
    res = CliRunner().invoke(cli_lab.lab_app, ["run", "--profile", "smoke", "--workers", "1",
                                               "--out", str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "no_such_model" in res.output  # each failure's reason, not just "error"
    assert "Every experiment failed" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_cli_prints_verdicts_on_stdout_and_plain_progress_lines(tmp_path):
    data = tmp_path / "d.npz"
    _arrays(data, 300)
    proc = _cli("--tips", "optimizers", "--profile", "smoke", "--data", str(data),
                "--out", str(tmp_path / "out"), "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "optimizers:" in proc.stdout  # the verdict line
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert lines and "ETA" in lines[-1]  # not a terminal: one plain line per unit
    assert "USDT" not in proc.stderr + proc.stdout


def test_units_write_scratch_folders_without_fsync_and_the_result_file_durably(
        tmp_path, monkeypatch):
    """A unit's folder is scratch (an interrupted unit restarts from an empty one): its
    checkpoints are written without fsync; the experiment's result file is still fsynced."""
    import os

    from dltricks.lab import execute

    synced: list[bool] = []
    real = os.fsync
    in_unit = {"now": False}
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(in_unit["now"]), real(fd))[1])
    run_unit = execute.run_unit

    def watched(*a, **k):
        in_unit["now"] = True
        try:
            return run_unit(*a, **k)
        finally:
            in_unit["now"] = False

    monkeypatch.setattr(execute, "run_unit", watched)
    result = run_experiment(tiny(seeds=1), "smoke", tmp_path)
    assert all(u["status"] == "ok" for u in result["units"].values())
    assert len(list((tmp_path / "runs").rglob("summary.json"))) == 2  # atomic writes inside
    assert synced and not any(synced)  # fsyncs happened, none of them inside a unit


def test_a_lab_folder_in_use_is_refused_with_exit_2_and_released_after(tmp_path, monkeypatch):
    """Two drivers never share a lab folder: while one holds it, `lab run --out` on it exits 2
    naming the holder's pid and nothing is written; once released, the same command runs."""
    import os

    from typer.testing import CliRunner

    import dltricks.cli.lab as cli_lab
    from dltricks.train.run import RunLock

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(cli_lab, "select_experiments", lambda tips, section: [tiny(seeds=1)])
    args = ["run", "--profile", "smoke", "--workers", "1", "--out", str(out), "--no-progress"]
    with RunLock(out, option="--out"):  # another driver (a second open file: flock conflicts)
        res = CliRunner().invoke(cli_lab.lab_app, args)
        assert res.exit_code == 2, res.output
        text = " ".join(res.output.split())
        assert f"in use by another process (pid {os.getpid()})" in text and "--out" in text
        assert "Traceback" not in res.output and not (out / "results").exists()
        with pytest.raises(ValueError, match="in use"):
            run_experiment(tiny(seeds=1), "smoke", out)
    res = CliRunner().invoke(cli_lab.lab_app, args)
    assert res.exit_code == 0, res.output
    assert (out / "results" / "tiny_par.json").is_file()
