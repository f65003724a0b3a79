"""`dltricks compress` on a tiny trained run: the report's numbers describe real models."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dltricks.cli.main import app
from dltricks.compress import interleaved_latency
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.trainer import Trainer

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run") / "digits"
    recipe = recipe_from_dict({
        "name": "tiny", "device": "cpu",
        "model": {"name": "small_cnn", "kwargs": {"channels": [32, 64]}},
        "data": {"name": "digits", "batch_size": 64},
        "optimizer": {"lr": 3e-3}, "train": {"steps": 30, "epochs": None},
    })
    Trainer(recipe, d, tensorboard=False).fit()
    return d


def test_compress_cli_prunes_quantizes_and_exports(run_dir, tmp_path):
    out = tmp_path / "c"
    res = runner.invoke(app, ["compress", str(run_dir), "--quantize", "int8", "--prune", "0.5",
                              "--prune-rounds", "2", "--finetune-steps", "5", "--export", "onnx",
                              "--latency-rounds", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    v = report["variants"]
    assert set(v) == {"float", "pruned", "int8", "onnx"}
    assert v["pruned"]["params"] < 0.5 * v["float"]["params"]
    assert v["int8"]["size_bytes"] < v["pruned"]["size_bytes"] < v["float"]["size_bytes"]
    assert report["onnx"]["ok"]
    assert v["onnx"]["test_accuracy"] == pytest.approx(v["pruned"]["test_accuracy"])
    assert v["float"]["accuracy_change"] == 0 and v["float"]["latency_ratio"] == 1
    assert (out / "model.onnx").is_file() and (out / "report.md").is_file()
    loaded = torch.jit.load(str(out / "model_pruned.ts"))
    assert loaded(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_compress_cli_qat(run_dir, tmp_path):
    out = tmp_path / "q"
    res = runner.invoke(app, ["compress", str(run_dir), "--quantize", "qat", "--finetune-steps",
                              "3", "--latency-rounds", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["variants"]) == {"float", "int8"}
    assert report["variants"]["int8"]["size_bytes"] < 0.5 * report["variants"]["float"][
        "size_bytes"]
    assert len(report["qat_loss_first_last"]) == 2


@pytest.mark.parametrize("args,msg", [
    (["--prune", "1.5"], "fraction"),
    (["--quantize", "int4"], "Unknown quantization"),
    ([], "nothing to do"),
])
def test_compress_cli_bad_input_exits_2(run_dir, args, msg):
    res = runner.invoke(app, ["compress", str(run_dir), *args])
    assert res.exit_code == 2 and msg in " ".join(res.output.split())


def test_interleaved_latency_ranks_callables():
    import time

    out = interleaved_latency({"slow": lambda _: time.sleep(0.004),
                               "fast": lambda _: time.sleep(0.001)}, None, rounds=3, warmup=0)
    assert out["slow"]["ratio"] == 1.0 and out["fast"]["ratio"] < 0.6
