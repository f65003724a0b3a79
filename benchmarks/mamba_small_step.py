"""Training-step time of a small Mamba LM against the matched Transformer LM, on one thread.

The lab's Mamba-vs-Transformer experiments train tiny language models (width 64, 2 layers,
length 64, batch 32); this measures one of their training steps — forward, cross-entropy,
backward, gradient clipping at norm 1.0 and an AdamW step — for the Mamba LM and for the
Transformer LM whose feed-forward width is solved to Mamba's parameter count
(:func:`dltricks.models.families.model_spec`, as the lab builds them), in the same process on
the same batch. A third function times the selective scans of such a step alone (two layers'
``selective_scan`` forward + backward at the Mamba block's shapes) to show the scan's share.

After ``--warmup`` untimed rounds (which also compile the numba kernel), ``--rounds`` rounds
call each function once (``--steps`` steps per call), the order rotated every round
(:func:`dltricks.compare.measure.interleaved_ms`), so that a shared machine's load hits all of
them alike. Each call's wall time and the process's CPU time (``time.process_time``, which a
busy shared machine inflates far less: a preempted process accrues none) are recorded.
Reported: the median per-step time of each over rounds, and the median of the per-round ratio
Mamba / Transformer, by wall and by CPU time (the numbers to compare between machines and code
versions; on an idle machine the two agree).
Output: a table on stdout and JSON in benchmarks/results/ (with ``nproc`` and the load average
before and after, since the 2-core VM is shared).

Usage:
    python benchmarks/mamba_small_step.py [--threads 1] [--rounds 15] [--steps 3]
        [--batch 32] [--length 64] [--dim 64] [--layers 2] [--tag _after]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dltricks.models import create_model
from dltricks.models.families import model_spec
from dltricks.nn.ssm import selective_scan

VOCAB = 16


def build(family: str, dim: int, layers: int) -> torch.nn.Module:
    spec = model_spec(family, "lm", dim, layers, vocab_size=VOCAB)
    torch.manual_seed(0)
    return create_model(spec["name"], vocab_size=VOCAB, **spec["kwargs"]).train()


def step_fn(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor, steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

    def run() -> None:
        for _ in range(steps):
            logits = model(tokens)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    return run


def scan_fn(model: torch.nn.Module, batch: int, length: int, steps: int):
    """Forward + backward of every Mamba layer's selective scan at the block's shapes."""
    blocks = [m for m in model.modules() if type(m).__name__ == "MambaBlock"]
    g = torch.Generator().manual_seed(0)
    ins = []
    for blk in blocks:
        e, n = blk.d_inner, blk.d_state
        ins.append({
            "u": torch.randn(batch, length, e, generator=g).transpose(1, 2),
            "delta": torch.randn(batch, length, e, generator=g).transpose(1, 2) * 0.5,
            "A": -torch.exp(blk.A_log.detach().float()),
            "B": torch.randn(batch, length, n, generator=g).transpose(1, 2),
            "C": torch.randn(batch, length, n, generator=g).transpose(1, 2),
            "D": blk.D.detach().float(), "z": torch.randn(batch, length, e, generator=g
                                                         ).transpose(1, 2),
            "delta_bias": blk.dt_proj.bias.detach().float(),
        })
    leaves = [{k: v.detach().requires_grad_() for k, v in x.items()} for x in ins]

    def run() -> None:
        for _ in range(steps):
            for x in leaves:
                selective_scan(**x, delta_softplus=True).sum().backward()

    return run


def interleaved(fns: dict, rounds: int, warmup: int) -> tuple[dict, dict]:
    """Wall and CPU milliseconds of each call, the functions interleaved, the order rotated by
    one every round (as :func:`dltricks.compare.measure.interleaved_ms`)."""
    keys = list(fns)
    wall: dict = {k: [] for k in keys}
    cpu: dict = {k: [] for k in keys}
    for r in range(warmup + rounds):
        k0 = r % len(keys)
        for k in keys[k0:] + keys[:k0]:
            c0, t0 = time.process_time(), time.perf_counter()
            fns[k]()
            t1, c1 = time.perf_counter(), time.process_time()
            if r >= warmup:
                wall[k].append((t1 - t0) * 1e3)
                cpu[k].append((c1 - c0) * 1e3)
    return wall, cpu


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="training steps per timed call")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name, e.g. _after")
    args = ap.parse_args()
    for name in ("threads", "rounds", "steps", "batch", "length", "dim", "layers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1.")
    torch.set_num_threads(args.threads)
    load_before = load()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (args.batch, args.length), generator=gen)
    targets = torch.randint(0, VOCAB, (args.batch, args.length), generator=gen)
    models = {f: build(f, args.dim, args.layers) for f in ("mamba", "transformer")}
    fns = {f: step_fn(m, tokens, targets, args.steps) for f, m in models.items()}
    fns["scan"] = scan_fn(models["mamba"], args.batch, args.length, args.steps)
    t0 = time.perf_counter()
    wall_ms, cpu_ms = interleaved(fns, args.rounds, args.warmup)
    wall = time.perf_counter() - t0
    per_step = {k: [t / args.steps for t in ts] for k, ts in wall_ms.items()}
    cpu_step = {k: [t / args.steps for t in ts] for k, ts in cpu_ms.items()}

    def ratio(a: dict, num: str, den: str) -> list[float]:
        return [x / y for x, y in zip(a[num], a[den], strict=True)]

    ratios, cpu_ratios = ratio(per_step, "mamba", "transformer"), ratio(cpu_step, "mamba",
                                                                        "transformer")
    shares = ratio(cpu_step, "scan", "mamba")
    result = {
        "benchmark": "mamba_small_step", "command": "python " + " ".join(sys.argv),
        "config": {k: getattr(args, k) for k in ("threads", "rounds", "warmup", "steps",
                                                 "batch", "length", "dim", "layers")},
        "params": {f: sum(p.numel() for p in m.parameters()) for f, m in models.items()},
        "step_ms_median": {k: statistics.median(v) for k, v in per_step.items()},
        "step_ms_min": {k: min(v) for k, v in per_step.items()},
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "cpu_step_ms_median": {k: statistics.median(v) for k, v in cpu_step.items()},
        "cpu_ratio_median": statistics.median(cpu_ratios),
        "cpu_ratio_range": [min(cpu_ratios), max(cpu_ratios)],
        "scan_share_median": statistics.median(shares),
        "per_round_ms": per_step, "per_round_cpu_ms": cpu_step,
        "note": "ratio: Mamba step / Transformer step within a round, median over rounds (wall "
                "time; cpu_: process CPU time); scan: the two layers' selective_scan forward + "
                "backward alone (its share: by CPU time)",
        "torch": torch.__version__, "machine": f"{platform.machine()} {platform.processor()}",
        "nproc": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load(),
        "wall_s": round(wall, 1), "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"mamba_small_step{args.tag}.json"
    path.write_text(json.dumps(result, indent=1))
    med, low, cpu = result["step_ms_median"], result["step_ms_min"], result["cpu_step_ms_median"]
    print(f"B={args.batch} L={args.length} width {args.dim}, {args.layers} layers, "
          f"{args.threads} thread(s); load {load_before} -> {result['loadavg_after']}")
    print(f"{'per step':12s} {'wall median':>12s} {'wall min':>9s} {'CPU median':>11s}")
    for k in ("mamba", "transformer", "scan"):
        print(f"{k:12s} {med[k]:12.1f} {low[k]:9.1f} {cpu[k]:11.1f}")
    print(f"Mamba / Transformer: wall {result['ratio_median']:.2f} "
          f"[{result['ratio_range'][0]:.2f}-{result['ratio_range'][1]:.2f}], CPU "
          f"{result['cpu_ratio_median']:.2f} [{result['cpu_ratio_range'][0]:.2f}-"
          f"{result['cpu_ratio_range'][1]:.2f}]; scan share of the Mamba step: "
          f"{result['scan_share_median']:.0%}  -> {path}")


if __name__ == "__main__":
    main()
