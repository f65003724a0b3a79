"""Per-step overhead of the dltricks training engine against a bare PyTorch loop.

Both loops train the same model on the same data with the same optimizer, batch size and
thread count, in the same process. The engine does everything it does for a user (objective
statistics, LR schedule step, gradient-norm tracking, NaN/Inf check, metrics.jsonl and
TensorBoard logging every 50 steps, the default). Both loops timestamp the end of every
optimizer step; the per-step time is the mean interval over steps ``--skip`` .. ``--steps``
(one epoch, so no evaluation or checkpoint falls inside). Fixed costs (building the model,
the final evaluation, writing the checkpoint) are therefore excluded on both sides.

The two loops alternate ``--repeats`` times so that machine noise hits both. Reported: the best
per-step time of each loop (noise on a shared VM only ever adds time) and the median and
quartiles of the per-repeat ratio. Output: a table on stdout and JSON in benchmarks/results/.

Usage:
    python benchmarks/engine_overhead.py [--repeats 21] [--steps 110] [--skip 10] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
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
from dltricks.train.trainer import Callback, Trainer, epoch_batches

MODEL = {"name": "cnn1d", "kwargs": {"channels": [32, 64], "norm": "batch"}}
RECIPE = {
    "name": "bench",
    "model": MODEL,
    "data": {"name": "mnist1d", "batch_size": 64, "kwargs": {"num_samples": 12000}},
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "train": {"steps": 110, "deterministic": False},  # logs every 50 steps (default)
}


def bare_loop(data, steps: int) -> list[float]:
    """Timestamps after each of ``steps`` plain optimizer steps."""
    torch.manual_seed(0)
    model = create_model(MODEL["name"], in_channels=1, num_classes=10, **MODEL["kwargs"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    batches = epoch_batches(len(data.train), 64, 0, 0)
    stamps = []
    for b in range(steps):
        idx = batches[b]
        x, y = data.train.x[idx], data.train.y[idx]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(time.perf_counter())
    return stamps


class _Stamps(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_step_end(self, trainer: Trainer) -> None:
        self.stamps.append(time.perf_counter())


def engine(data, steps: int) -> list[float]:
    """Timestamps after each of ``steps`` engine steps."""
    recipe = recipe_from_dict({**RECIPE, "train": {**RECIPE["train"], "steps": steps}})
    cb = _Stamps()
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(recipe, Path(tmp) / "run", data=data, callbacks=[cb]).fit()
    return cb.stamps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--steps", type=int, default=110)
    ap.add_argument("--skip", type=int, default=10, help="warm-up steps left out of the mean")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice, all cores)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = create_dataset("mnist1d", seed=0, num_samples=12000)
    if len(data.train) // 64 < args.steps:
        raise SystemExit("--steps exceeds one epoch; an evaluation would fall inside")
    per_step: dict[str, list[float]] = {"bare": [], "engine": []}
    ratios = []
    loops = [("bare", bare_loop), ("engine", engine)]
    for rep in range(args.repeats):
        for name, fn in loops if rep % 2 == 0 else loops[::-1]:  # alternate who goes first
            s = fn(data, args.steps)
            per_step[name].append((s[-1] - s[args.skip - 1]) / (args.steps - args.skip))
        ratios.append(per_step["engine"][-1] / per_step["bare"][-1])
    bare, eng = min(per_step["bare"]), min(per_step["engine"])
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    result = {
        "benchmark": "engine_overhead",
        "model": "cnn1d [32, 64] on MNIST-1D, batch 64, AdamW",
        "bare_ms_per_step_min": bare * 1e3,
        "engine_ms_per_step_min": eng * 1e3,
        "overhead_pct_of_min": (eng / bare - 1) * 100,
        "overhead_pct_median_of_pairs": (statistics.median(ratios) - 1) * 100,
        "overhead_pct_quartiles_of_pairs": [(q[0] - 1) * 100, (q[2] - 1) * 100],
        "overhead_us_per_step_median_of_pairs": statistics.median(
            (e - b) * 1e6 for e, b in zip(per_step["engine"], per_step["bare"], strict=True)),
        "samples_ms": {k: [v * 1e3 for v in vs] for k, vs in per_step.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_t{args.threads}" if args.threads else ""
    (args.out / f"engine_overhead{suffix}.json").write_text(json.dumps(result, indent=1))
    print(f"| loop | ms / step (best of {args.repeats}) |")
    print("|---|---|")
    print(f"| bare PyTorch | {bare * 1e3:.3f} |")
    print(f"| dltricks Trainer | {eng * 1e3:.3f} |")
    lo, hi = result["overhead_pct_quartiles_of_pairs"]
    print(f"engine adds {result['overhead_us_per_step_median_of_pairs']:.0f} µs per step "
          "(median of paired runs)")
    print(f"overhead: {result['overhead_pct_of_min']:+.1f}% (best vs best); "
          f"{result['overhead_pct_median_of_pairs']:+.1f}% median of {args.repeats} paired runs "
          f"(quartiles {lo:+.1f}% .. {hi:+.1f}%); target < 5%")


if __name__ == "__main__":
    main()
