"""Our CPU selective scan against the CPU implementations Mamba users have today.

Peers (each skipped, with a message, when its package is missing):

* ``hf_sequential``: Hugging Face transformers' Mamba on the CPU. Without the ``mamba-ssm``
  package, ``MambaMixer.forward`` (transformers >= 5; older releases called the same code
  ``slow_forward``) computes its scan with ``modeling_mamba.mamba_selective_scan``: it builds
  exp(Δ A) and Δ B u as full (B, D, L, N) tensors, then runs a Python loop over time
  (state = dA[:, :, t] * state + dBu[:, :, t]; y_t = state @ C_t) and stacks the outputs;
  autograd differentiates the loop.
* ``hf_mambapy``: the same function with ``use_mambapy=True`` (what ``MambaConfig(use_mambapy=
  True)`` selects): the loop is replaced by mamba.py's Blelloch parallel scan (``mambapy.pscan``)
  over the same (B, D, L, N) tensors, with its own backward. Needs ``pip install mambapy``,
  which dltricks does not depend on. transformers falls back to the sequential loop when
  mambapy is absent, so this script checks for it itself.

Two levels, same sizes (batch 2, d_inner 512, d_state 16, float32):

* ``scan``: one call of the scan function with identical arguments (u, Δ, A, B, C, D, z,
  Δ bias, softplus) — ours is ``dltricks.nn.ssm.selective_scan(..., backend="cpu")``, the
  peers are ``mamba_selective_scan`` called exactly as ``MambaMixer.forward`` calls it.
* ``mixer``: the whole block (d_model 256 → in_proj, causal conv, x_proj, dt_proj, scan, gate,
  out_proj): our ``MambaBlock(256)`` against transformers' ``MambaMixer`` built with
  ``MambaConfig(hidden_size=256)``, both holding the same weights (ours are copied into theirs;
  the parameter names match), so the outputs must agree.

Timing: ``fwd`` is one call under ``torch.no_grad()`` (the mixers in eval mode); ``fwd_bwd`` is
one call with gradients on and ``out.sum().backward()`` (the mixers in train mode, with
gradients to the input and all parameters; the scan with gradients to all eight inputs).
Every implementation is warmed up once, then the implementations are interleaved — one call
of each per round, the order rotated every round — for ``--repeats`` rounds, because the
machine is shared and its speed drifts. A speed-up is the peer's time over ours *in the same
round*; the table shows the median over rounds and the range. A peer whose single call takes
more than ``--slow-call-s`` gets one timed round only (said in the output), and a peer whose
call is predicted (from the lengths already measured, with their fitted growth exponent) to
take more than ``--max-call-s`` is skipped at that length with the prediction as the reason.

Memory: the peak extra resident memory (RSS high-water mark) of one fwd_bwd call, each
measurement in a fresh child process: the child builds the inputs (and modules), runs one
warm-up call at L = 64 (thread pools, numba compilation), resets the high-water mark through
``/proc/self/clear_refs``, runs the call and reports VmHWM minus the VmRSS before the call.
The child runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so that large blocks are mmapped and
returned to the OS when freed. This counts every allocation (torch's and NumPy's — the torch
profiler's memory events would miss our kernel's NumPy buffers). A measurement is skipped when
its predicted peak exceeds half the machine's available memory.

Usage:
    python benchmarks/selective_scan_peers.py [--lengths 256 1024 4096 16384] [--repeats 5]
        [--levels scan mixer] [--threads 2] [--max-call-s 600] [--no-memory] [--tag _t1]

The 1-minute load average before and after each timed set is stored with the results: the
machine is shared, and on an oversubscribed 2-vCPU machine two torch threads wait at every
op's barrier, which hurts the peers' thousands of small ops (the Python loop) the most.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dltricks.compare.measure import fit_exponent
from dltricks.nn.ssm import selective_scan
from dltricks.nn.ssm.mamba_block import MambaBlock

BATCH, D_INNER, D_STATE, D_MODEL = 2, 512, 16, 256
MODES = ("fwd", "fwd_bwd")
OURS = "dltricks_cpu"


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_peers() -> tuple[list[str], list[str]]:
    """(peer names, messages about the ones skipped)."""
    peers, notes = [], []
    if have("transformers"):
        peers.append("hf_sequential")
        if have("mambapy"):
            peers.append("hf_mambapy")
        else:
            notes.append("hf_mambapy skipped: mambapy is not installed (pip install mambapy).")
    else:
        notes.append("hf_sequential and hf_mambapy skipped: transformers is not installed.")
    return peers, notes


def scan_inputs(length: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b, d, n = BATCH, D_INNER, D_STATE
    return {
        "u": torch.randn(b, d, length, generator=g),
        "delta": torch.randn(b, d, length, generator=g) * 0.5 - 2.0,  # softplus ≈ 0.1
        "A": -torch.arange(1, n + 1).float().repeat(d, 1),  # S4D-real initialisation
        "B": torch.randn(b, n, length, generator=g),
        "C": torch.randn(b, n, length, generator=g),
        "D": torch.ones(d),
        "z": torch.randn(b, d, length, generator=g),
        "delta_bias": torch.randn(d, generator=g) * 0.1,
    }


def scan_fn(name: str) -> Callable[[dict], torch.Tensor]:
    if name == OURS:
        return lambda x: selective_scan(**x, delta_softplus=True, backend="cpu")
    from transformers.models.mamba import modeling_mamba

    use_mambapy = name == "hf_mambapy"

    def peer(x: dict) -> torch.Tensor:  # the call MambaMixer.forward makes
        return modeling_mamba.mamba_selective_scan(
            x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"],
            delta_bias=x["delta_bias"], delta_softplus=True, return_last_state=False,
            use_mambapy=use_mambapy, use_associative_scan=False)

    return peer


def build_mixers(names: list[str]) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    ours = MambaBlock(D_MODEL, d_state=D_STATE, scan_backend="cpu")
    out: dict[str, torch.nn.Module] = {OURS: ours}
    for name in names:
        if name == OURS:
            continue
        from transformers import MambaConfig
        from transformers.models.mamba.modeling_mamba import MambaMixer

        cfg = MambaConfig(hidden_size=D_MODEL, state_size=D_STATE, expand=2, conv_kernel=4,
                          use_mambapy=name == "hf_mambapy")
        mixer = MambaMixer(cfg, layer_idx=0)
        mixer.load_state_dict(ours.state_dict())
        out[name] = mixer
    return out


class Case:
    """One implementation at one level and length: callables for fwd and fwd_bwd."""

    def __init__(self, level: str, name: str, length: int,
                 mixer: torch.nn.Module | None = None) -> None:
        self.level, self.name = level, name
        if level == "scan":
            fn = scan_fn(name)
            ins = scan_inputs(length)
            leaf = {k: v.clone().requires_grad_() for k, v in ins.items()}
            self.fwd = lambda: fn(ins)
            self._fb = lambda: fn(leaf)
            self._leaves = list(leaf.values())
        else:
            assert mixer is not None
            h = torch.randn(BATCH, length, D_MODEL, generator=torch.Generator().manual_seed(0))
            hl = h.clone().requires_grad_()
            self._mixer = mixer
            self.fwd = lambda: mixer.eval()(h)
            self._fb = lambda: mixer.train()(hl)
            self._leaves = [hl, *mixer.parameters()]

    def run(self, mode: str) -> torch.Tensor | None:
        if mode == "fwd":
            with torch.no_grad():
                return self.fwd()
        for p in self._leaves:
            p.grad = None
        self._fb().sum().backward()
        return None


def fitted_exponent(points: dict[int, float]) -> float | None:
    """Growth exponent over every measured length ({length: value})."""
    lengths = sorted(points)
    return fit_exponent(lengths, [points[n] for n in lengths], tail=len(lengths))


def predict(points: dict[int, float], length: int, default_exp: float = 1.0) -> float | None:
    """Value at ``length`` extrapolated from the largest measured length, with the fitted
    exponent (``default_exp`` with one point)."""
    if not points:
        return None
    last = max(points)
    exp = fitted_exponent(points)
    return points[last] * (length / last) ** (default_exp if exp is None else max(exp, 1.0))


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


# ---------------------------------------------------------------- memory (child process)

def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(level: str, name: str, length: int, threads: int) -> None:
    torch.set_num_threads(threads)
    mixers = build_mixers([name]) if level == "mixer" else {}
    Case(level, name, 64, mixers.get(name)).run("fwd_bwd")  # warm-up at a tiny length
    case = Case(level, name, length, mixers.get(name))
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    case.run("fwd_bwd")
    print(json.dumps({"peak_mb": (_status_kb("VmHWM") - before) / 1024}))


def measure_memory(level: str, name: str, length: int, threads: int,
                   timeout: float) -> tuple[float | None, str | None]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--memory-child", level, name, str(length),
           "--threads", str(threads)]
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"child timed out after {timeout:.0f} s"
    if res.returncode != 0:
        return None, f"child failed (exit {res.returncode}): {res.stderr.strip()[-200:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_mb"], None


# ---------------------------------------------------------------- timing

def time_level(level: str, names: list[str], lengths: list[int], args,
               results: dict) -> None:
    mixers = build_mixers(names) if level == "mixer" else {}
    res = results.setdefault(level, {})
    for length in lengths:
        row = res.setdefault(str(length), {"ms": {}, "speedup": {}, "skipped": {},
                                           "single_round": [], "max_abs_diff": {},
                                           "peak_mb": {}})
        cases = {n: Case(level, n, length, mixers.get(n)) for n in names}
        # parity: every output against ours
        outs = {n: c.run("fwd") for n, c in cases.items()
                if n == OURS or not _too_slow(results, level, n, "fwd", length, args)}
        for n, o in outs.items():
            if n != OURS:
                row["max_abs_diff"][n] = float((o - outs[OURS]).abs().max())
        del outs
        for mode in MODES:
            active = []
            for n in names:
                reason = _too_slow(results, level, n, mode, length, args)
                reason = reason or _too_big(results, level, n, mode, length)
                if reason:
                    row["skipped"][f"{n}/{mode}"] = reason
                    print(f"  [{level} L={length}] {n} {mode}: skipped — {reason}", flush=True)
                else:
                    active.append(n)
            # a warm-up call, which also tells whether a peer is slow enough for one round;
            # a peer predicted to be slow from the shorter lengths gets no warm-up
            slow = {n: (predict(_series(results, level, n, "ms", mode), length) or 0.0)
                    > args.slow_call_s for n in active}
            for n in active:
                if not slow[n]:
                    t0 = time.perf_counter()
                    cases[n].run(mode)
                    slow[n] = time.perf_counter() - t0 > args.slow_call_s
            times: dict[str, list[float]] = {n: [] for n in active}
            load = [os.getloadavg()[0]]
            for r in range(args.repeats):
                order = active[r % len(active):] + active[:r % len(active)]
                for n in order:
                    if r > 0 and slow[n]:
                        continue
                    t0 = time.perf_counter()
                    cases[n].run(mode)
                    times[n].append(time.perf_counter() - t0)
            load.append(os.getloadavg()[0])
            row.setdefault("load_1min", {})[mode] = load
            ours = times[OURS]
            row["ms"].setdefault(mode, {})
            row["speedup"].setdefault(mode, {})
            for n in active:
                row["ms"][mode][n] = [1e3 * t for t in times[n]]
                if len(times[n]) == 1 and args.repeats > 1:
                    row["single_round"].append(f"{n}/{mode}")
                if n != OURS:
                    ratios = [p / o for p, o in zip(times[n], ours, strict=False)]
                    row["speedup"][mode][n] = {"median": statistics.median(ratios),
                                               "min": min(ratios), "max": max(ratios),
                                               "rounds": len(ratios)}
            msg = "  ".join(
                f"{n} {1e3 * min(times[n]):.1f} ms" + (
                    f" (×{row['speedup'][mode][n]['median']:.1f})" if n != OURS else "")
                for n in active)
            print(f"[{level} L={length:5d} {mode:7s}] {msg}", flush=True)
        if args.memory:
            for n in names:
                reason = (_too_slow(results, level, n, "fwd_bwd", length, args)
                          or _too_big(results, level, n, "fwd_bwd", length))
                if reason:
                    row["peak_mb"][n] = None
                    row["skipped"][f"{n}/memory"] = reason
                    continue
                best = min(row["ms"].get("fwd_bwd", {}).get(n, [1e3 * args.max_call_s]))
                peak, err = measure_memory(level, n, length, args.threads,
                                           timeout=120 + 3 * best / 1e3)
                row["peak_mb"][n] = peak
                if err:
                    row["skipped"][f"{n}/memory"] = err
                print(f"[{level} L={length:5d} memory ] {n}: "
                      f"{'n/a (' + err + ')' if err else f'{peak:.1f} MB'}", flush=True)
        del cases
        _save(results, args)


def _series(results: dict, level: str, name: str, key: str, mode: str | None = None):
    out = {}
    for length, row in results.get(level, {}).items():
        if key == "ms":
            vals = row["ms"].get(mode, {}).get(name)
            if vals:
                out[int(length)] = min(vals) / 1e3
        else:
            v = row["peak_mb"].get(name)
            if v:
                out[int(length)] = v
    return out


def _too_slow(results, level, name, mode, length, args) -> str | None:
    if name == OURS:
        return None
    pred = predict(_series(results, level, name, "ms", mode), length)
    if pred is not None and pred > args.max_call_s:
        return (f"predicted {pred:.0f} s per call (extrapolated from the measured lengths) "
                f"> --max-call-s {args.max_call_s:.0f}")
    return None


def _too_big(results, level, name, mode, length) -> str | None:
    if name == OURS or mode != "fwd_bwd":
        return None
    pred = predict(_series(results, level, name, "peak"), length, default_exp=1.0)
    avail = mem_available_mb()
    if pred is not None and pred > 0.5 * avail:
        return (f"predicted peak {pred / 1024:.1f} GB > half of the {avail / 1024:.1f} GB "
                f"available now")
    return None


def _save(results: dict, args) -> None:
    for level, rows in results.items():
        if level.startswith("_"):
            continue
        names = sorted({n for row in rows.values() for n in row["peak_mb"]}
                       | {n for row in rows.values() for m in MODES
                          for n in row["ms"].get(m, {})})
        fits = results.setdefault("_exponents", {}).setdefault(level, {})
        for n in names:
            fits[n] = {
                "memory": fitted_exponent(_series(results, level, n, "peak")),
                **{f"time_{m}": fitted_exponent(_series(results, level, n, "ms", m))
                   for m in MODES},
            }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"selective_scan_peers{args.tag}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": results["_meta"], "exponents": results["_exponents"],
                               **{k: v for k, v in results.items()
                                  if not k.startswith("_")}}, indent=1))
    tmp.replace(path)


def report(results: dict, lengths: list[int]) -> None:
    for level in ("scan", "mixer"):
        rows = results.get(level)
        if not rows:
            continue
        print(f"\n## {level} level — best ms (speed-up of ours: median [min–max] over rounds)")
        for mode in MODES:
            names = [n for n in [OURS, "hf_sequential", "hf_mambapy"]
                     if any(n in rows[str(n_)]["ms"].get(mode, {}) for n_ in lengths
                            if str(n_) in rows)]
            print(f"\n{mode}: | L | " + " | ".join(names) + " |")
            for length in lengths:
                row = rows.get(str(length))
                if row is None:
                    continue
                cells = []
                for n in names:
                    ms = row["ms"].get(mode, {}).get(n)
                    if not ms:
                        cells.append("skipped")
                        continue
                    cell = f"{min(ms):.1f}"
                    sp = row["speedup"].get(mode, {}).get(n)
                    if sp:
                        cell += (f" (×{sp['median']:.1f} [{sp['min']:.1f}–{sp['max']:.1f}]"
                                 f", {sp['rounds']} rd)")
                    cells.append(cell)
                print(f"| {length} | " + " | ".join(cells) + " |")
        names = [n for n in [OURS, "hf_sequential", "hf_mambapy"]
                 if any(n in r["peak_mb"] for r in rows.values())]
        print("\npeak MB (fwd_bwd): | L | " + " | ".join(names) + " |")
        for length in lengths:
            row = rows.get(str(length))
            if row:
                vals = [row["peak_mb"].get(n) for n in names]
                print(f"| {length} | " + " | ".join(
                    "n/a" if v is None else f"{v:.1f}" for v in vals) + " |")
        print("exponents:", json.dumps(results["_exponents"].get(level, {})))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--levels", nargs="+", default=["scan", "mixer"],
                    choices=["scan", "mixer"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slow-call-s", type=float, default=20.0,
                    help="a peer whose call takes longer gets one timed round")
    ap.add_argument("--max-call-s", type=float, default=600.0,
                    help="skip a peer predicted to take longer per call")
    ap.add_argument("--no-memory", dest="memory", action="store_false")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name, e.g. _mixer")
    ap.add_argument("--memory-child", nargs=3, metavar=("LEVEL", "NAME", "L"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        level, name, length = args.memory_child
        memory_child(level, name, int(length), args.threads)
        return
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        numba_info = f"numba {numba.__version__}, {numba.get_num_threads()} threads"
    except ImportError:
        raise SystemExit("numba is needed for the CPU kernel") from None
    peers, notes = available_peers()
    for note in notes:
        print(note)
    versions = {"torch": torch.__version__, "numba": numba_info}
    for mod in ("transformers", "mambapy"):
        if have(mod):
            from importlib.metadata import version

            versions[mod] = version(mod)
    results: dict = {"_meta": {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs; "
                   f"{platform.platform()}",
        "torch_threads": args.threads, "versions": versions,
        "shape": {"batch": BATCH, "d_inner": D_INNER, "d_state": D_STATE,
                  "d_model_mixer": D_MODEL, "dtype": "float32"},
        "repeats": args.repeats, "slow_call_s": args.slow_call_s,
        "max_call_s": args.max_call_s, "skipped_peers": notes,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }, "_exponents": {}}
    names = [OURS, *peers]
    for level in args.levels:
        time_level(level, names, args.lengths, args, results)
    report(results, args.lengths)
    print(f"\nwrote {args.out / f'selective_scan_peers{args.tag}.json'}")


if __name__ == "__main__":
    main()
