"""The CPU selective scan on 1 and 2 threads, on an idle machine and under a deliberate load.

Issue 13: with numba's OpenMP threading layer the scan ran a second OpenMP runtime beside
torch's, and when other processes kept the cores busy its 2-thread call became several times
slower than a 1-thread call. This times ``selective_scan`` forward + backward (backend "cpu",
softplus Δ with bias, D skip and z gate, as in a Mamba block) at the issue's shape (L=1024,
batch 2, d_inner 512, N=16) with ``torch.set_num_threads(1)`` and ``(2)``, interleaved
(the order alternates every round), first as the machine is, then while ``--hogs`` busy-loop
processes (default: one per core) run. The hogs are plain Python loops that end by themselves
after ``--hog-seconds`` and are killed when the measurement ends, whatever happens.

Reported per phase and thread count: the median and range of the per-call wall time over
``--rounds`` rounds, and the median ratio 2-thread / 1-thread (below 1: the second thread
helps); for the whole ``selective_scan`` (whose softplus, layout copies and the test's
``.sum()`` are torch ops on torch's own thread pool) and, where the kernel module has the
``threads`` API of this version, for the numba kernels alone (``cpu_scan.forward`` +
``backward`` with ``threads=1`` / ``2``). The load average before each phase is recorded,
since the 2-core VM is shared: an "idle" phase is only as idle as the other users leave it.

Usage:
    python benchmarks/scan_under_load.py [--rounds 6] [--hogs N] [--hog-seconds 120]
        [--length 1024] [--batch 2] [--dim 512] [--tag _after]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from dltricks.nn.ssm import selective_scan

HOG = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def inputs(length: int, batch: int, dim: int, state: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ins = {
        "u": torch.randn(batch, dim, length, generator=g),
        "delta": torch.randn(batch, dim, length, generator=g) * 0.5,
        "A": -torch.rand(dim, state, generator=g) - 0.5,
        "B": torch.randn(batch, state, length, generator=g),
        "C": torch.randn(batch, state, length, generator=g),
        "D": torch.randn(dim, generator=g),
        "z": torch.randn(batch, dim, length, generator=g),
        "delta_bias": torch.randn(dim, generator=g) * 0.1,
    }
    return {k: v.requires_grad_() for k, v in ins.items()}


def scan_call(ins: dict[str, torch.Tensor]):
    def run(threads: int) -> None:
        torch.set_num_threads(threads)
        selective_scan(**ins, delta_softplus=True, backend="cpu").sum().backward()

    return run


def kernel_call(ins: dict[str, torch.Tensor]):
    """The numba kernels alone (forward + backward) with ``threads``; None for a kernel module
    without the ``threads`` API (the version before issue 13)."""
    from dltricks.nn.ssm import cpu_scan

    if not hasattr(cpu_scan, "plan_threads"):
        return None
    with torch.no_grad():
        dt = torch.nn.functional.softplus(ins["delta"] + ins["delta_bias"][:, None])

    def bld(t: torch.Tensor):
        return t.detach().transpose(1, 2).contiguous().numpy()

    u, dtl, z = bld(ins["u"]), bld(dt), bld(ins["z"])
    At = ins["A"].detach().t().contiguous().numpy()
    Bm, Cm = (ins[k].detach().transpose(1, 2)[:, None].contiguous().numpy() for k in "BC")
    Dv = ins["D"].detach().numpy()

    def run(threads: int) -> None:
        out, y, ckpt = cpu_scan.forward(u, dtl, At, Bm, Cm, Dv, z, threads=threads)
        cpu_scan.backward(u, dtl, At, Bm, Cm, ckpt, y, out, Dv, z, threads=threads)

    return run


def measure(fn, rounds: int) -> dict[int, list[float]]:
    """Wall milliseconds of ``fn(1)`` and ``fn(2)``, interleaved."""
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for threads in ((1, 2) if r % 2 == 0 else (2, 1)):
            t0 = time.perf_counter()
            fn(threads)
            times[threads].append((time.perf_counter() - t0) * 1e3)
    return times


def summary(times: dict[int, list[float]], load: list[float]) -> dict:
    ratios = [b / a for a, b in zip(times[1], times[2], strict=True)]
    return {"loadavg_before": load,
            **{f"t{n}_ms_median": statistics.median(ts) for n, ts in times.items()},
            **{f"t{n}_ms_range": [min(ts), max(ts)] for n, ts in times.items()},
            "ratio_2_over_1_median": statistics.median(ratios),
            "per_round_ms": {str(n): ts for n, ts in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--hogs", type=int, default=os.cpu_count() or 1,
                    help="busy-loop processes in the loaded phase (default: one per core)")
    ap.add_argument("--hog-seconds", type=float, default=120.0,
                    help="the hogs stop by themselves after this long")
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name, e.g. _after")
    args = ap.parse_args()
    for name in ("rounds", "hogs", "length", "batch", "dim"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1.")
    if not 0 < args.hog_seconds <= 600:
        ap.error("--hog-seconds must be in (0, 600].")
    threads_before = torch.get_num_threads()
    ins = inputs(args.length, args.batch, args.dim)
    fns = {"scan": scan_call(ins), "kernel": kernel_call(ins)}
    fns = {k: f for k, f in fns.items() if f is not None}
    for f in fns.values():
        measure(f, 1)  # compiles the kernels (or loads them from numba's cache)
    load = [round(v, 2) for v in os.getloadavg()]
    phases = {f"idle {k}": summary(measure(f, args.rounds), load) for k, f in fns.items()}
    hogs = [subprocess.Popen([sys.executable, "-c", HOG.format(seconds=args.hog_seconds)])
            for _ in range(args.hogs)]
    try:
        time.sleep(1.0)  # let the hogs start spinning
        load = [round(v, 2) for v in os.getloadavg()]
        t0 = time.perf_counter()
        for k, f in fns.items():
            phases[f"loaded {k}"] = summary(measure(f, args.rounds), load)
        loaded_s = time.perf_counter() - t0
        if loaded_s + 1.0 > args.hog_seconds:
            print(f"warning: the loaded phase ({loaded_s:.0f} s) outlasted the hogs; raise "
                  "--hog-seconds or lower --rounds", file=sys.stderr)
    finally:
        for p in hogs:
            p.kill()
        for p in hogs:
            p.wait()
        torch.set_num_threads(threads_before)
    result = {
        "benchmark": "scan_under_load", "command": "python " + " ".join(sys.argv),
        "shape": f"L={args.length}, B={args.batch}, d_inner={args.dim}, N=16",
        "rounds": args.rounds, "hogs": args.hogs, "phases": phases,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "note": "forward + backward of selective_scan(backend='cpu') ('scan') and of the numba "
                "kernels alone ('kernel'); ratio < 1: two threads are faster than one",
        "torch": torch.__version__, "machine": f"{platform.machine()} {platform.processor()}",
        "nproc": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scan_under_load{args.tag}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"selective_scan fwd+bwd, {result['shape']}; {args.hogs} busy-loop processes when "
          f"loaded; {os.cpu_count()} cores")
    print(f"{'phase':14s} {'load':>6s} {'1 thread ms':>19s} {'2 threads ms':>19s} {'2t/1t':>6s}")
    for name, ph in phases.items():
        r1, r2 = ph["t1_ms_range"], ph["t2_ms_range"]
        print(f"{name:14s} {ph['loadavg_before'][0]:6.2f} "
              f"{ph['t1_ms_median']:7.1f} [{r1[0]:.0f}-{r1[1]:.0f}] "
              f"{ph['t2_ms_median']:7.1f} [{r2[0]:.0f}-{r2[1]:.0f}] "
              f"{ph['ratio_2_over_1_median']:6.2f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
