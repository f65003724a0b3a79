"""Attention latency and peak memory against sequence length, with fitted growth exponents.

Variants (one attention call on already-projected heads, B=1, H=4, E=32, fp32, no grad):
dense SDPA (fused kernel), the written-out reference, sliding window (w=64), Longformer
(w=64 + 8 global tokens), axial (half the heads along rows, half along columns of a square
grid) and Linformer (k=64). Lengths are square numbers so that the axial grid is square.

Latency is the best of ``--repeats`` calls after a warm-up, on ``--threads`` torch threads (1
by default: steadier on a shared machine). Peak memory is the growth of the process's
resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) during one
call, measured in a child process started with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed
tensors go back to the OS and each measurement starts from the same footing (that setting
slows allocation, so timings come from the parent process). The growth
exponent is the least-squares slope of log(value) against log(L): about 2 for O(L²), 1 for
O(L), 1.5 for axial's O(L·sqrt(L)). The memory exponent is fitted over the points above 1 MB
(below that the high-water mark is mostly page granularity); "n/a" when fewer than two are.

Usage:
    python benchmarks/attention_scaling.py [--lengths 256 576 1024 2304 4096] [--repeats 5]
        [--threads 1] [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dltricks.nn.attention import reference_attention, sdpa_attention
from dltricks.nn.efficient_attention import axial_attention, linformer_attention, local_attention

HEADS, HEAD_DIM, WINDOW, GLOBAL, LIN_K = 4, 32, 64, 8, 64
MEMORY_FLOOR_MB = 1.0  # below this the RSS high-water mark is mostly page granularity


def variants(length: int, device: str = "cpu") -> dict[str, tuple[str, Callable]]:
    """name → (complexity, fn(q, k, v))."""
    side = math.isqrt(length)
    g = torch.Generator().manual_seed(1)
    proj_k = (torch.randn(LIN_K, length, generator=g) / math.sqrt(LIN_K)).to(device)
    proj_v = (torch.randn(LIN_K, length, generator=g) / math.sqrt(LIN_K)).to(device)
    global_idx = torch.arange(GLOBAL, device=device)
    half = HEADS // 2

    def axial(q, k, v):
        rows = axial_attention(q[:, :half], k[:, :half], v[:, :half], (side, side), "row")
        cols = axial_attention(q[:, half:], k[:, half:], v[:, half:], (side, side), "col")
        return torch.cat([rows, cols], 1)

    return {
        "dense_sdpa": ("O(L^2) time", sdpa_attention),
        "reference": ("O(L^2) time+memory", reference_attention),
        f"local_w{WINDOW}": ("O(L*w)", lambda q, k, v: local_attention(q, k, v, WINDOW)),
        f"longformer_w{WINDOW}_g{GLOBAL}": (
            "O(L*(w+G))", lambda q, k, v: local_attention(q, k, v, WINDOW,
                                                          global_idx=global_idx)),
        "axial": ("O(L*sqrt(L))", axial),
        f"linformer_k{LIN_K}": ("O(L*k)", lambda q, k, v: linformer_attention(q, k, v, proj_k,
                                                                               proj_v)),
    }


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_mb(fn: Callable[[], object]) -> float | None:
    """Growth of the resident-set high-water mark while ``fn`` runs, in MB (None if unknown)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    fn()
    after = _status_kb("VmHWM")
    if before is None or after is None:
        return None
    return max(after - before, 0) / 1024


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def cuda_peak_mb(fn: Callable[[], object]) -> float:
    """Growth of CUDA's allocated-memory peak while ``fn`` runs, in MB."""
    _sync()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    _sync()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def slope(xs: list[float], ys: list[float | None], floor: float = 0.0) -> float | None:
    """Least-squares slope of log(y) on log(x) over the points with y > floor."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > floor]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def measure(lengths: list[int], repeats: int, memory: bool, device: str = "cpu",
            dtype: torch.dtype = torch.float32) -> dict[str, dict]:
    """Latencies and (``memory=True``) peak memory of every variant.

    On the CPU a call measures one of the two (the memory pass runs in a child process); on
    CUDA both, with the CUDA allocator's peak statistics.
    """
    results: dict[str, dict] = {}
    with torch.no_grad():
        for length in lengths:
            g = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(1, HEADS, length, HEAD_DIM, generator=g).to(device, dtype)
                       for _ in range(3))
            for name, (complexity, fn) in variants(length, device).items():
                row = results.setdefault(name, {"complexity": complexity, "ms": [],
                                                "peak_mb": []})
                call = functools.partial(fn, q, k, v)
                if device != "cpu":
                    row["ms"].append(best_ms(call, repeats))
                    row["peak_mb"].append(cuda_peak_mb(call))
                elif memory:
                    call()  # warm-up: one-time allocations are not the call's working memory
                    row["peak_mb"].append(peak_mb(call))
                else:
                    row["ms"].append(best_ms(call, repeats))
                    print(f"  L={length:5d} {name:24s} {row['ms'][-1]:9.2f} ms",
                          file=sys.stderr)
    return results


def memory_in_child(args: argparse.Namespace) -> dict[str, list]:
    """Runs the memory pass in a fresh process whose malloc returns freed blocks to the OS."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--memory-child", "--threads", str(args.threads),
           "--lengths", *map(str, args.lengths)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 576, 1024, 2304, 4096])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 by default: steadier on a shared machine)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    for n in args.lengths:
        if math.isqrt(n) ** 2 != n:
            raise SystemExit(f"--lengths must be square numbers (axial grid), got {n}.")
    if args.memory_child:
        mem = measure(args.lengths, 1, memory=True)
        print(json.dumps({name: row["peak_mb"] for name, row in mem.items()}))
        return
    if args.device == "cpu":
        results = measure(args.lengths, args.repeats, memory=False, dtype=dtype)
        for name, peaks in memory_in_child(args).items():
            results[name]["peak_mb"] = peaks
    else:
        results = measure(args.lengths, args.repeats, memory=True, device=args.device,
                          dtype=dtype)
    for row in results.values():
        row["time_exponent"] = slope(args.lengths, row["ms"])
        row["memory_exponent"] = slope(args.lengths, row["peak_mb"], floor=MEMORY_FLOOR_MB)

    head = " ".join(f"{n:>8d}" for n in args.lengths)
    where = (f"{args.threads} CPU thread(s)" if args.device == "cpu"
             else torch.cuda.get_device_name())
    print(f"\nLatency (ms, best of {args.repeats}) — B=1, H={HEADS}, E={HEAD_DIM}, "
          f"{args.dtype}, {where}")
    print(f"| {'variant':26s} | {'complexity':18s} | {head} | slope |")
    for name, row in results.items():
        vals = " ".join(f"{x:8.2f}" for x in row["ms"])
        print(f"| {name:26s} | {row['complexity']:18s} | {vals} | {row['time_exponent']:.2f} |")
    print("\nPeak memory growth during one call (MB)")
    print(f"| {'variant':26s} | {head} | slope |")
    for name, row in results.items():
        vals = " ".join(f"{x:8.1f}" if x is not None else f"{'n/a':>8s}" for x in row["peak_mb"])
        exp = row["memory_exponent"]
        print(f"| {name:26s} | {vals} | {'n/a' if exp is None else f'{exp:.2f}'} |")

    args.out.mkdir(parents=True, exist_ok=True)
    out = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "device": where,
                    "cpu_count": os.cpu_count(), "torch_threads": args.threads,
                    "torch": torch.__version__},
        "config": {"batch": 1, "heads": HEADS, "head_dim": HEAD_DIM, "window": WINDOW,
                   "global_tokens": GLOBAL, "linformer_k": LIN_K, "dtype": args.dtype,
                   "repeats": args.repeats},
        "lengths": args.lengths,
        "results": results,
    }
    suffix = "" if args.device == "cpu" and args.dtype == "float32" else \
        f"_{args.device}_{args.dtype}"
    path = args.out / f"attention_scaling{suffix}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
