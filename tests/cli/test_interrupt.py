"""Real processes: SIGTERM saves a checkpoint, kill -9 loses at most the steps since the last
one, and `dltricks resume` then reaches exactly the uninterrupted run's result."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dltricks.train import checkpoint as ckpt

ARGS = ["digits_mlp", "train.epochs=3", "train.checkpoint.every_steps=2",
        "model.kwargs.dropout=0.1", "--json", "--no-progress"]


def _dltricks(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "dltricks", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for_checkpoint(proc, run_dir, min_step, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = ckpt.latest_valid(run_dir / "checkpoints", warn=False)
        if found is not None and found.step >= min_step:
            return found
        if proc.poll() is not None:
            pytest.fail(f"training ended before step {min_step}: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    out, err = _dltricks("train", *ARGS, "--run-dir", run_dir).communicate(timeout=300)
    assert out, err
    return json.loads(out)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_then_resume_matches_uninterrupted(tmp_path, reference, sig):
    run_dir = tmp_path / "run"
    proc = _dltricks("train", *ARGS, "--run-dir", run_dir)
    _wait_for_checkpoint(proc, run_dir, min_step=6)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, err
        assert "resume" in err
        reason = ckpt.latest_valid(run_dir / "checkpoints").meta["reason"]
        assert reason.startswith("signal") or reason == "epoch_end"
    else:
        assert proc.returncode == -signal.SIGKILL
    res = subprocess.run([sys.executable, "-m", "dltricks", "resume", str(run_dir), "--json",
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    resumed = json.loads(res.stdout)
    assert resumed["test"] == reference["test"]
    assert resumed["best_val"] == reference["best_val"]
    assert resumed["steps"] == reference["steps"]
