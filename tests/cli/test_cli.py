"""The `dltricks` command, driven in-process."""

import json

import pytest
from typer.testing import CliRunner

import dltricks
from dltricks.cli.main import app

runner = CliRunner()
FAST = ["train.steps=12", "train.log_every_steps=4"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_version_and_help():
    assert dltricks.__version__ in run("--version").output
    out = run("--help").output
    for cmd in ("train", "eval", "resume", "recipes", "datasets", "data", "lr-find", "schedule"):
        assert cmd in out


def test_recipes_lists_builtins_and_shows_one():
    out = run("recipes").output
    assert "digits_cnn" in out and "mnist1d_cnn1d" in out
    shown = run("recipes", "--show", "digits_cnn").output
    assert "small_cnn" in shown and "label_smoothing" in shown


def test_datasets_lists_embedded_data():
    out = run("datasets").output
    for name in ("digits", "mnist1d", "seg2d", "seg3d", "selective_copying", "mqar"):
        assert name in out


def test_data_preview_writes_png(tmp_path):
    png = tmp_path / "d.png"
    res = run("data", "preview", "digits", "--out", png)
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "10" in res.output  # number of classes is printed


def test_train_eval_resume_round_trip(tmp_path):
    run_dir = tmp_path / "run"
    res = run("train", "digits_mlp", *FAST, "--run-dir", run_dir, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["steps"] == 12 and 0 <= summary["test"]["accuracy"] <= 1
    res = run("eval", run_dir, "--split", "val", "--checkpoint", "last")
    assert res.exit_code == 0 and "accuracy" in res.output
    # resuming a finished run does no more steps and reproduces the summary
    res = run("resume", run_dir, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["test"] == summary["test"]


def test_train_prints_accuracy_and_run_folder(tmp_path):
    res = run("train", "digits_mlp", *FAST, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert "test accuracy:" in res.output and "run folder:" in res.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "digits_mlp", "optimizer.lrr=1"], "unknown key 'optimizer.lrr'"),
        (["train", "digits_mlp", "train.epochs=abc"], "'train.epochs'"),
        (["train", "no_such_recipe"], "Unknown recipe 'no_such_recipe'"),
        (["train", "digits_mlp", "model.name=resnet9000"], "Unknown model 'resnet9000'"),
        (["train", "digits_mlp", "data.name=digitz"], "Did you mean 'digits'"),
        (["data", "preview", "nope"], "Unknown dataset 'nope'"),
    ],
)
def test_bad_input_exits_2_with_message(tmp_path, args, needle):
    res = runner.invoke(app, [*args, "--out", str(tmp_path)] if args[0] == "train" else args)
    assert res.exit_code == 2, res.output
    assert needle in res.output


def test_eval_of_missing_run_is_an_error(tmp_path):
    res = runner.invoke(app, ["eval", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_schedule_plot(tmp_path):
    png = tmp_path / "s.png"
    res = run("schedule", "plot", "digits_cnn", "--out", png)
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 1000 and "steps" in res.output


def test_lr_find_suggests_a_learning_rate(tmp_path):
    png = tmp_path / "lr.png"
    res = run("lr-find", "digits_mlp", "--steps", 40, "--plot", png)
    assert res.exit_code == 0, res.output
    assert "suggested lr" in res.output and png.is_file()
