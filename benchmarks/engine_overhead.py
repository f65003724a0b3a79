"""Per-step overhead of the dltricks training engine against a bare PyTorch loop.

Both loops train the same model on the same data with the same optimizer, batch size and
thread count, in the same process. The engine does everything it does for a user (objective
statistics, LR schedule step, gradient-norm tracking, NaN/Inf check, logging to metrics.jsonl and
TensorBoard every 10 steps). Fixed costs (dataset generation, model building, final evaluation,
checkpoint) are cancelled by timing two run lengths and taking the difference:

    per-step time = (T(n_long) - T(n_short)) / (n_long - n_short)

Each measurement is repeated and the median kept; runs of the two loops are interleaved so that
machine noise hits both. Output: a table on stdout and JSON in benchmarks/results/.

Usage:
    python benchmarks/engine_overhead.py [--repeats 5] [--short 20] [--long 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dltricks.data import create_dataset
from dltricks.models import create_model
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.trainer import Trainer, epoch_batches

RECIPE = {
    "name": "bench",
    "model": {"name": "cnn1d", "kwargs": {"channels": [32, 64], "norm": "batch"}},
    "data": {"name": "mnist1d", "batch_size": 64, "kwargs": {"num_samples": 12000}},
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "train": {"steps": 100, "deterministic": False, "log_every_steps": 10},
}


def bare_loop(data, steps: int) -> float:
    """Seconds for ``steps`` plain steps (model built inside, like the engine does)."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = create_model("cnn1d", in_channels=1, num_classes=10, channels=[32, 64], norm="batch")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    batches = epoch_batches(len(data.train), 64, 0, 0)
    for b in range(steps):
        idx = batches[b]
        x, y = data.train.x[idx], data.train.y[idx]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def engine(data, steps: int) -> float:
    recipe = recipe_from_dict({**RECIPE, "train": {**RECIPE["train"], "steps": steps}})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        Trainer(recipe, Path(tmp) / "run", data=data).fit()
        # fixed costs (setup, final val/test evaluation, checkpoint) cancel in the difference
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--short", type=int, default=20)
    ap.add_argument("--long", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    data = create_dataset("mnist1d", seed=0, num_samples=12000)
    if len(data.train) // 64 < args.long:
        raise SystemExit("--long exceeds one epoch; the difference would include an epoch end")
    engine(data, 5)  # warm-up both paths (allocator, kernels, imports)
    bare_loop(data, 5)
    per_step = {"bare": [], "engine": []}
    for _ in range(args.repeats):
        for name, fn in (("bare", bare_loop), ("engine", engine)):
            t_long = fn(data, args.long)
            t_short = fn(data, args.short)
            per_step[name].append((t_long - t_short) / (args.long - args.short))
    bare = statistics.median(per_step["bare"])
    eng = statistics.median(per_step["engine"])
    result = {
        "benchmark": "engine_overhead",
        "model": "cnn1d [32, 64] on MNIST-1D, batch 64, AdamW",
        "bare_ms_per_step": bare * 1e3,
        "engine_ms_per_step": eng * 1e3,
        "overhead_pct": (eng / bare - 1) * 100,
        "samples": {k: [v * 1e3 for v in vs] for k, vs in per_step.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"{torch.get_num_threads()} threads".strip(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine_overhead.json").write_text(json.dumps(result, indent=1))
    print(f"| loop | ms / step (median of {args.repeats}) |")
    print("|---|---|")
    print(f"| bare PyTorch | {bare * 1e3:.3f} |")
    print(f"| dltricks Trainer | {eng * 1e3:.3f} |")
    print(f"overhead: {result['overhead_pct']:+.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
