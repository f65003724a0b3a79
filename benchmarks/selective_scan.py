"""Selective scan on the CPU: the fused numba kernel against the plain PyTorch reference.

Both run in the same process on the same inputs (B=2, D=64, N=16, softplus delta, D skip and
z gate, as in a Mamba block), forward alone and forward + backward, at growing lengths. After a
warm-up call of each (which also compiles the kernel), the two alternate for ``--repeats``
rounds (``dltricks.compare.measure.interleaved_ms``: who goes first alternates), so that both
see the same machine load; a speed-up is the reference's time over the kernel's in the same
round, and the table shows the median over rounds with the range. Peers outside dltricks
(Hugging Face, mamba.py) are compared in ``selective_scan_peers.py``.

Usage:
    python benchmarks/selective_scan.py [--lengths 256 1024 4096] [--repeats 5] [--threads 2]
        [--tag _t1]
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

from dltricks.compare.measure import interleaved_ms
from dltricks.nn.ssm import selective_scan


def inputs(length: int, batch: int = 2, dim: int = 64, state: int = 16) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "u": torch.randn(batch, dim, length, generator=g),
        "delta": torch.randn(batch, dim, length, generator=g) * 0.5,
        "A": -torch.rand(dim, state, generator=g) - 0.5,
        "B": torch.randn(batch, state, length, generator=g),
        "C": torch.randn(batch, state, length, generator=g),
        "D": torch.randn(dim, generator=g),
        "z": torch.randn(batch, dim, length, generator=g),
        "delta_bias": torch.randn(dim, generator=g) * 0.1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name, e.g. _t1")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for length in args.lengths:
        ins = inputs(length)
        leaf = {k: v.clone().requires_grad_() for k, v in ins.items()}
        row = {"L": length}
        for mode in ("fwd", "fwd_bwd"):
            fns = {}
            for backend in ("ref", "cpu"):
                if mode == "fwd":
                    def fn(b=backend, x=ins):
                        with torch.no_grad():
                            selective_scan(**x, delta_softplus=True, backend=b)
                else:
                    def fn(b=backend, x=leaf):
                        selective_scan(**x, delta_softplus=True, backend=b).sum().backward()
                fns[backend] = fn
            times = interleaved_ms(fns, args.repeats, warmup=1)  # warm-up compiles the kernel
            ratios = [r / c for r, c in zip(times["ref"], times["cpu"], strict=True)]
            for backend, ts in times.items():
                row[f"{backend}_{mode}_ms"] = min(ts)
            row[f"speedup_{mode}"] = statistics.median(ratios)
            row[f"speedup_{mode}_range"] = [min(ratios), max(ratios)]
        rows.append(row)
        print(f"L={length:6d}  fwd: ref {row['ref_fwd_ms']:9.1f} ms"
              f"  cpu {row['cpu_fwd_ms']:8.1f} ms  ×{row['speedup_fwd']:5.1f}"
              f" [{row['speedup_fwd_range'][0]:.1f}–{row['speedup_fwd_range'][1]:.1f}]"
              f"   fwd+bwd: ref {row['ref_fwd_bwd_ms']:9.1f} ms"
              f"  cpu {row['cpu_fwd_bwd_ms']:8.1f} ms  ×{row['speedup_fwd_bwd']:5.1f}"
              f" [{row['speedup_fwd_bwd_range'][0]:.1f}–{row['speedup_fwd_bwd_range'][1]:.1f}]",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"selective_scan{args.tag}.json").write_text(json.dumps({
        "benchmark": "selective_scan", "command": "python " + " ".join(sys.argv),
        "shape": "B=2, D=64, N=16", "repeats": args.repeats,
        "note": "times: best of the interleaved rounds; speedup: median of paired ratios",
        "rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))


if __name__ == "__main__":
    main()
