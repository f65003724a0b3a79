"""Time of one small lab unit with durable checkpoint writes against scratch writes.

A lab unit trains one (arm, seed) in a folder that is thrown away when the unit is interrupted
(the runner starts it again from an empty folder), so the lab runs units inside
:func:`dltricks.utils.io.scratch_writes`: checkpoints and logs stay atomic (temporary file and
rename) but are not fsynced. On the lab's small units the per-epoch checkpoints' fsyncs were a
large part of a unit; this measures how large, on the quick profile's units of one experiment
(default: ``optimizers``, an MLP on digits, 150 steps, one checkpoint per epoch).

Both variants run the same unit (same arm, same seed: identical metrics, checked) in this
process on one torch thread, interleaved round by round
(:func:`dltricks.utils.timing.interleaved_ms`), so a shared machine's load hits both alike.
Reported: median milliseconds per unit of each and the median per-round ratio scratch/durable.

Usage:
    python benchmarks/lab_unit_overhead.py [--experiment optimizers] [--arm sgd@lr=0.3]
        [--rounds 8] [--out benchmarks/results]
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

from dltricks.lab.experiment import get_experiment
from dltricks.lab.unit import DataCache, run_unit
from dltricks.utils.io import scratch_writes
from dltricks.utils.timing import interleaved_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="optimizers")
    ap.add_argument("--arm", default="sgd@lr=0.3")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    exp = get_experiment(args.experiment)
    cache = DataCache()
    root = Path(tempfile.mkdtemp(prefix="lab-unit-overhead-"))
    metrics: dict[str, dict] = {}

    def unit(kind: str) -> None:
        rec = run_unit(exp, args.arm, 0, "quick", root / kind, cache)
        metrics.setdefault(kind, rec["metrics"])
        if rec["metrics"] != metrics[kind]:
            raise RuntimeError("the same unit gave different metrics on a rerun")

    def scratch() -> None:
        with scratch_writes():
            unit("scratch")

    load_before = [round(v, 2) for v in os.getloadavg()]
    t0 = time.strftime("%Y-%m-%d %H:%M")
    times = interleaved_ms({"durable": lambda: unit("durable"), "scratch": scratch},
                           rounds=args.rounds, warmup=1)
    if metrics["durable"] != metrics["scratch"]:
        raise RuntimeError("scratch writes changed the unit's metrics")
    ratios = [s / d for s, d in zip(times["scratch"], times["durable"], strict=True)]
    result = {
        "experiment": args.experiment, "arm": args.arm, "rounds": args.rounds,
        "durable_ms": statistics.median(times["durable"]),
        "scratch_ms": statistics.median(times["scratch"]),
        "ratio_scratch_over_durable": statistics.median(ratios),
        "ratio_min_max": [min(ratios), max(ratios)],
        "when": t0, "nproc": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
    }
    print(f"{args.experiment}/{args.arm}, quick, {args.rounds} rounds: durable "
          f"{result['durable_ms']:.0f} ms, scratch {result['scratch_ms']:.0f} ms per unit; "
          f"scratch/durable {result['ratio_scratch_over_durable']:.2f} "
          f"[{min(ratios):.2f}-{max(ratios):.2f}]; load {load_before} -> {result['load_after']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lab_unit_overhead.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
