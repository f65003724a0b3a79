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


# ------------------------------------------------------------------ the CLI people expect
def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_analyze_recipe_models_without_kwargs():
    from dltricks.models import create_model

    out = _json(run("analyze", "small_cnn", "--json", "--no-layers"))
    assert out["input"] == "1x3x224x224"  # in_channels=3 read from the input
    assert out["params"] == _params(create_model("small_cnn", in_channels=3, num_classes=10))
    out = _json(run("analyze", "cnn1d", "--json"))
    assert out["input"] == "1x1x40"  # the registry example's input for a 1-D model
    assert out["params"] == _params(create_model("cnn1d", in_channels=1, num_classes=10))
    res = run("analyze", "cnn1d", "--no-layers")
    assert "num_classes=10 (from registry example)" in " ".join(res.output.split())


def test_analyze_meta_build_with_stochastic_depth():
    """Built on the meta device: the drop-path rates used to come from linspace().tolist()."""
    import torch

    from dltricks.models import create_model
    from dltricks.nn.drop import DropPath

    kw = ["--kw", "residual=true", "--kw", "drop_path=0.3", "--kw", "channels=[8,16,32]",
          "--kw", "blocks_per_stage=2"]
    out = _json(run("analyze", "small_cnn", "--input", "1x1x16x16", *kw, "--json"))
    net = create_model("small_cnn", in_channels=1, num_classes=10, residual=True,
                       drop_path=0.3, channels=[8, 16, 32], blocks_per_stage=2)
    assert out["params"] == _params(net)
    rates = [m.p for m in net.modules() if isinstance(m, DropPath)]
    assert rates == pytest.approx(torch.linspace(0, 0.3, 6).tolist())


def test_analyze_takes_model_and_input_from_a_recipe():
    from dltricks.models import create_model
    from dltricks.train.recipe import load_builtin_recipe

    out = _json(run("analyze", "--recipe", "digits_cnn", "--json", "--no-layers"))
    assert out["model"] == "small_cnn" and out["input"] == "1x1x8x8"
    kw = load_builtin_recipe("digits_cnn").model.kwargs
    assert out["kwargs"] == {"in_channels": 1, "num_classes": 10, "spatial_dims": 2, **kw}
    assert out["params"] == _params(create_model("small_cnn", in_channels=1, num_classes=10,
                                                 **kw))
    out = _json(run("analyze", "--recipe", "mnist1d_cnn1d", "--timing", "--device", "cpu",
                    "--json"))
    assert out["input"] == "1x1x40" and out["latency_ms"] > 0


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mlp", "mnist1d_cnn1d", "seg2d_fcn",
                                  "selective_copying_gru"])
def test_recipes_show_prints_yaml_that_train_accepts(tmp_path, name):
    from dltricks.train.recipe import load_builtin_recipe, resolve_recipe

    res = run("recipes", "--show", name)
    assert res.exit_code == 0, res.output
    path = tmp_path / "my.yaml"
    path.write_text(res.stdout)
    assert resolve_recipe(path).to_dict() == load_builtin_recipe(name).to_dict()


def test_recipes_show_resolves_a_path_with_overrides(tmp_path):
    import yaml

    from dltricks.train.recipe import load_recipe

    long = "x" * 150  # the console wrapped lines at 80 columns
    base = run("recipes", "--show", "digits_mlp", f"description={long}").stdout
    assert yaml.safe_load(base)["description"] == long
    (tmp_path / "a.yaml").write_text(base)
    res = run("recipes", "--show", tmp_path / "a.yaml", "optimizer.lr=0.123", "train.epochs=2")
    (tmp_path / "b.yaml").write_text(res.stdout)
    r = load_recipe(tmp_path / "b.yaml")
    assert (r.optimizer.lr, r.train.epochs, r.description) == (0.123, 2, long)


def test_models_lists_name_params_and_task():
    from dltricks.models import create_model, list_models

    rows = _json(run("models", "--json"))
    assert [r["name"] for r in rows] == list_models()
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet50"]["params"] == _params(create_model("resnet50"))  # 25.6M
    assert by_name["small_cnn"]["needs"] == {"in_channels": 1, "num_classes": 10}
    assert by_name["mamba_lm"]["task"] == "sequence"
    assert {r["name"] for r in _json(run("models", "resnet*", "--json"))} == {
        "resnet18", "resnet50", "resnet50_v1"}
    assert {r["name"] for r in _json(run("models", "mamba", "--json"))} == set(
        list_models("*mamba*"))
    text = run("models", "cnn").output
    assert "small_cnn" in text and "19.6k" in text and "resnet" not in text


def test_help_has_an_example_per_command():
    for cmd in (["analyze"], ["models"], ["recipes"], ["datasets"], ["data", "preview"],
                ["export-hf"], ["schedule", "plot"]):
        out = run(*cmd, "--help").output
        assert "Examples:" in out and "dltricks " + cmd[0] in out, cmd


def test_shell_completion():
    assert "--install-completion" in run("--help").output
    script = run("--show-completion", "bash").output
    assert "_DLTRICKS_COMPLETE=complete_bash" in script

    def complete(words, cword):
        env = {"_DLTRICKS_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(cword)}
        return runner.invoke(app, [], env=env, prog_name="dltricks").output.split()

    assert complete("dltricks rec", 1) == ["recipes"]
    assert complete("dltricks analyze small", 2) == ["small_cnn"]
    assert complete("dltricks recipes --show digits_m", 3) == ["digits_mlp"]


def test_lab_list_fits_80_columns():
    res = runner.invoke(app, ["lab", "list"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    # ids are never broken across lines
    from dltricks.coverage import catalog_status

    ids = [r["id"] for r in catalog_status()]
    assert all(any(i in line for line in lines) for i in ids)


def test_data_doc_preview_examples_run(tmp_path):
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "data.md").read_text()
    lines = re.findall(r"^dltricks data preview .*$", doc, flags=re.M)
    assert lines
    for line in lines:
        args = shlex.split(line.split("#")[0])[1:]
        if "--out" not in args:
            args += ["--out", str(tmp_path / "p.png")]
        if "mnist1d" in args:
            args.append("num_samples=200")
        res = run(*args)
        assert res.exit_code == 0, (line, res.output)


def test_export_hf_of_a_trained_run_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file

    from dltricks.models.hf_mamba import load_hf_mamba
    from dltricks.train.trainer import checkpoint_weights_file

    run_dir = tmp_path / "run"
    recipe = ["selective_copying_gru", "model.name=mamba_lm",
              "model.kwargs={dim: 16, n_layers: 1, scan_backend: ref}", "train.steps=2",
              "train.log_every_steps=1", "schedule.warmup_steps=0", "data.kwargs={n_samples: 200}"]
    res = run("train", *recipe, "--run-dir", run_dir, "--json")
    assert res.exit_code == 0, res.output
    # `recipes --show` prints exactly the recipe the run used and saved
    assert run("recipes", "--show", *recipe).stdout == (run_dir / "recipe.yaml").read_text()
    res = run("export-hf", run_dir, tmp_path / "hf")
    assert res.exit_code == 0, res.output
    found, file = checkpoint_weights_file(run_dir, "best")
    trained = load_file(found.path / file)
    ours = load_hf_mamba(tmp_path / "hf", scan_backend="ref").eval()
    state = ours.state_dict()
    assert set(trained) <= set(state)
    for k, v in trained.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    hf = transformers.MambaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tokens = torch.randint(0, ours.lm_head.out_features, (2, 15))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ours(tokens), rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_analyze_timing_on_cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = _json(run("analyze", "small_cnn", "--timing", "--device", "cuda", "--json"))
    assert out["device"] == "cuda" and out["latency_ms"] > 0 and out["peak_memory_bytes"] > 0
