"""Two processes under torchrun (DDP, gloo on CPU) compute what one process computes at the
same global batch."""

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from dltricks.train import checkpoint as ckpt

ARGS = ["digits_mlp", "train.steps=12", "data.batch_size=64", "--json", "--no-progress"]


def _final_weights(run_dir):
    return load_file(ckpt.latest_valid(run_dir / "checkpoints").path / "model.safetensors")


def test_two_process_ddp_matches_single_process(tmp_path):
    one = subprocess.run([sys.executable, "-m", "dltricks", "train", *ARGS, "--run-dir",
                          str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "dltricks", "train", *ARGS, "--run-dir", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)  # rank 0 alone prints
    assert s1["steps"] == s2["steps"] == 12
    w1, w2 = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "two")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    for k, v in s1["test"].items():
        assert abs(s2["test"][k] - v) < 1e-3, k
    # rank 0 alone wrote the run folder: one metrics log, records once each
    recs = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").open()]
    steps = [r["step"] for r in recs if r["split"] == "train"]
    assert steps == sorted(set(steps))
