"""Bad input on the command line: exit status 2 and one sentence naming the problem, never a
traceback (issue 15); plus the environment problems that used to end in one (numba's cache)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dltricks.cli.main import app

runner = CliRunner()


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    # rich wraps messages at the console width: compare with whitespace collapsed
    return res, " ".join(res.output.split())


def assert_usage_error(res, text, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    for needle in needles:
        assert needle in text, text


def test_npz_that_is_not_a_zip(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    res, text = invoke("data", "preview", "arrays", f"path={junk}", "--out", tmp_path / "p.png")
    assert_usage_error(res, text, "junk.npz", "not a valid .npz file", "numpy.savez")
    assert "allow_pickle" not in text


@pytest.mark.parametrize("args, needles", [
    (["digits", "bogus_kw=1"], ["dataset 'digits'", "unknown key 'bogus_kw'", "fractions"]),
    (["digits", "fractions=abc"], ["fractions='abc' is not valid"]),
    (["digits", "fractions"], ["'fractions' is not of the form key=value"]),
    (["mnist1d", "max_translation=0"], ["max_translation must be in [1, 72]"]),
    (["digitz"], ["Unknown dataset 'digitz'", "Did you mean 'digits'"]),
])
def test_data_preview_bad_options(tmp_path, args, needles):
    res, text = invoke("data", "preview", *args, "--out", tmp_path / "p.png")
    assert_usage_error(res, text, *needles)
    assert not (tmp_path / "p.png").exists()


def test_label_warning_reaches_the_user(tmp_path):
    np.savez(tmp_path / "gap.npz", x=np.random.rand(30, 4), y=np.array([0, 1, 1000] * 10))
    with pytest.warns(UserWarning, match="1001 classes, 998 of them without samples"):
        res, _ = invoke("data", "preview", "arrays", f"path={tmp_path / 'gap.npz'}",
                        "--out", tmp_path / "p.png")
    assert res.exit_code == 0, res.output
    # on the command line a warning is one line, without file name and source line
    line = warnings.formatwarning("labels have gaps", UserWarning, "/x/user.py", 12, "code")
    assert line == "warning: labels have gaps\n"


@pytest.mark.parametrize("args, needles", [
    (["mamba_lm"], ["'mamba_lm' takes token ids", "float inputs"]),
    (["--recipe", "selective_copying_gru"], ["trains on token ids"]),
    ([], ["Give a model name", "--recipe"]),
    (["small_cnn", "--recipe", "digits_cnn"], ["not both"]),
    (["small_cnx"], ["Unknown model 'small_cnx'", "Did you mean"]),
    (["small_cnn", "--input", "3x224"], ["--input must look like 1x3x224x224"]),
    (["small_cnn", "--kw", "channels"], ["'channels' is not of the form key=value"]),
    (["small_cnn", "--kw", "colour=1"], ["does not accept 'colour'"]),
    (["small_cnn", "--device", "gpu"], ["Unknown device 'gpu'"]),
    (["small_cnn", "--device", "cuda:7", "--timing"], ["cuda:7"]),
])
def test_analyze_bad_input(args, needles):
    import torch

    if args[-2:] == ["cuda:7", "--timing"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    res, text = invoke("analyze", *args)
    assert_usage_error(res, text, *needles)


@pytest.mark.parametrize("args, needles", [
    (["--show", "no_such_recipe"], ["Unknown recipe 'no_such_recipe'"]),
    (["--show", "digits_cnn", "optimizer.lrr=1"], ["unknown key 'optimizer.lrr'"]),
    (["optimizer.lr=1"], ["overrides apply to a recipe", "--show"]),
])
def test_recipes_bad_input(args, needles):
    res, text = invoke("recipes", *args)
    assert_usage_error(res, text, *needles)


def test_models_pattern_without_match():
    res, text = invoke("models", "zzz_none")
    assert_usage_error(res, text, "No model matches '*zzz_none*'")


def test_lab_list_refuses_an_unknown_status():
    res, text = invoke("lab", "list", "--status", "bogus")
    assert_usage_error(res, text, "'bogus' is not a status", "'not measured'")


def test_export_hf_bad_run_folders(tmp_path):
    res, text = invoke("export-hf", tmp_path / "nothing", tmp_path / "out")
    assert_usage_error(res, text, "is not a run folder")
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text(runner.invoke(app, ["recipes", "--show",
                                                         "digits_mlp"]).stdout)
    res, text = invoke("export-hf", run, tmp_path / "out")
    assert_usage_error(res, text, "trained 'mlp'", "only mamba_lm")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- numba's on-disk cache
# The CPU scan's kernels are compiled with cache=True; numba raises at import when it finds no
# writable cache folder (the package's __pycache__, NUMBA_CACHE_DIR, HOME's cache). A copy of
# the module in a folder whose __pycache__ is a file, with HOME a file, reproduces that even as
# root (who ignores permission bits).
_PROBE = """
import sys, tempfile, warnings
if len(sys.argv) > 1:
    tempfile.tempdir = sys.argv[1]
warnings.simplefilter("always")
import numba, cpu_scan
print("cache", cpu_scan._CACHE, numba.config.CACHE_DIR)
"""


def _sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    pytest.importorskip("numba")
    import dltricks.nn.ssm.cpu_scan as cpu_scan

    box = tmp_path / "box"
    box.mkdir()
    shutil.copy(cpu_scan.__file__, box / "cpu_scan.py")
    (box / "__pycache__").write_text("a file, so nothing can be cached next to the module")
    (box / "home").write_text("a file, so HOME/.cache cannot be made")
    (box / "probe.py").write_text(_PROBE)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_", "XDG_")) and k not in ("TMPDIR", "TEMP", "TMP")}
    env["HOME"] = str(box / "home")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return box, env


def test_numba_cache_falls_back_to_a_temp_folder(tmp_path):
    box, env = _sandbox(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    res = subprocess.run([sys.executable, "probe.py"], cwd=box, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    fallback = tmp / f"dltricks-numba-cache-{os.getuid()}"
    assert f"cache True {fallback}" in res.stdout
    assert fallback.is_dir() and "Traceback" not in res.stderr


def test_numba_cache_off_with_one_warning_when_nothing_is_writable(tmp_path):
    box, env = _sandbox(tmp_path)
    res = subprocess.run([sys.executable, "probe.py", str(box / "home" / "tmp")], cwd=box,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "cache False" in res.stdout
    assert "numba cannot write its cache" in res.stderr and "NUMBA_CACHE_DIR" in res.stderr
    assert "Traceback" not in res.stderr
