"""Selective scan on the CPU: the fused numba kernel against the plain PyTorch reference.

Both run in the same process on the same inputs (B=2, D=64, N=16, softplus delta, D skip and
z gate, as in a Mamba block), forward alone and forward + backward, at growing lengths. Each
timing is the best of ``--repeats`` after a warm-up call (which also compiles the kernel).

Usage:
    python benchmarks/selective_scan.py [--lengths 256 1024 4096] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

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


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    rows = []
    for length in args.lengths:
        ins = inputs(length)
        leaf = {k: v.clone().requires_grad_() for k, v in ins.items()}
        row = {"L": length}
        for backend in ("ref", "cpu"):

            def fwd(b=backend, x=ins):
                return selective_scan(**x, delta_softplus=True, backend=b)

            def fwd_bwd(b=backend, x=leaf):
                selective_scan(**x, delta_softplus=True, backend=b).sum().backward()

            row[f"{backend}_fwd_ms"] = 1e3 * best_time(fwd, args.repeats)
            row[f"{backend}_fwd_bwd_ms"] = 1e3 * best_time(fwd_bwd, args.repeats)
        row["speedup_fwd"] = row["ref_fwd_ms"] / row["cpu_fwd_ms"]
        row["speedup_fwd_bwd"] = row["ref_fwd_bwd_ms"] / row["cpu_fwd_bwd_ms"]
        rows.append(row)
        print(f"L={length:6d}  fwd: ref {row['ref_fwd_ms']:9.1f} ms"
              f"  cpu {row['cpu_fwd_ms']:8.1f} ms"
              f"  ×{row['speedup_fwd']:5.1f}   fwd+bwd: ref {row['ref_fwd_bwd_ms']:9.1f} ms"
              f"  cpu {row['cpu_fwd_bwd_ms']:8.1f} ms  ×{row['speedup_fwd_bwd']:5.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selective_scan.json").write_text(json.dumps({
        "benchmark": "selective_scan", "shape": "B=2, D=64, N=16", "rows": rows,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores"}, indent=1))


if __name__ == "__main__":
    main()
