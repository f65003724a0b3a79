"""Fused selective scan for the CPU (numba), with its own backward pass.

Why a sequential loop: on a CPU with a few cores, a loop over time with the state in registers
beats a Blelloch parallel scan (which does about twice the work and needs the whole
(B, D, L, N) tensor), and it stays accurate in float32 at any length, unlike chunked log-space
cumulative products. Parallelism comes from the independent (batch, channel) pairs instead.

Layout: the kernels take (B, L, D) arrays, the layout a Mamba block's projections produce, and
loop over channels innermost. Each job is one batch row and a block of up to :data:`BLOCK`
channels of one group: its state is an (N, block) buffer, and every step runs
x[n, d] = exp(Δ[d] A[n, d]) x[n, d] + Δ[d] u[d] B[n] over contiguous d — no reduction in the
innermost loop, so it vectorises (8 channels per AVX2 instruction), and y's sum over n is
accumulated across the loop over n in the same order as a plain sum. The forward stores the
state only at chunk starts (every ``chunk`` steps), so memory is O(B·D·N·L/chunk) instead of
O(B·D·N·L); the (B, L, D, N) state tensor is never built. The D skip and the SiLU gate are
fused: each step ends with out_t = (y_t + D u_t) · silu(z_t) (y_t is kept for the backward), and
the backward starts each step with their gradients, so a Mamba block runs no separate
elementwise passes (and their autograd nodes) around the scan.

Backward: chunks are visited from the last to the first; each chunk's states are recomputed from
its stored start state into a chunk-sized buffer (keeping each step's exp(Δ A) too), then the
adjoint dx_t = C_t g_t + exp(Δ_{t+1} A) dx_{t+1} runs backwards through it, giving du, dΔ, dA, dB
and dC. dB_t[n] and dC_t[n] sum over a group's channels: those sums use 16 running sums and a
fixed tree (:func:`_sum`), which vectorise where a sequential float sum cannot.

Threads: the kernels are serial and release the GIL; a call with ``threads > 1`` splits its jobs
into contiguous ranges, runs one on the calling thread and the others on this module's own
helper threads (a :class:`~concurrent.futures.ThreadPoolExecutor`, made on first use). Unlike
numba's ``parallel=True`` (which loads a second OpenMP runtime beside torch's, whose idle threads
spin and which resets the OpenMP team size that torch reads), idle helpers sleep, a 1-thread
call starts no thread at all, and calls below :data:`MIN_PARALLEL_WORK` stay on one thread.
Partial sums that two threads could both add to (dA over the batch, dB and dC over a group's
channel blocks) get one buffer per thread, added at the end.

The exponential: exp(Δ_t A[d, n]) is most of the work (N of them per step). libm's expf is a
call that stops the compiler from vectorising the loop, so :func:`_exp32` computes it with
plain float32 arithmetic that LLVM turns into SIMD code: Cody-Waite range reduction, the
Cephes degree-6 polynomial, and 2^k assembled from exponent bits in two factors (so that results
that underflow into subnormals round once, as libm's do). Its error is at most 0.99 ulp against
float64 exp over [-110, 89] (libm's expf: 0.50 ulp), 1.02 ulp as the kernels compile it (with
fused multiply-adds, :data:`FASTMATH`); NaN, ±inf, overflow to inf and underflow to 0 match
libm. The backward pass keeps each chunk's exp(Δ A) from the recomputation instead of
computing it a second time.

Reference: Gu & Dao 2023 (Mamba), Algorithm 2; the gradient is the standard adjoint of a
diagonal linear recurrence. Tested against :func:`dltricks.nn.ssm.reference.selective_scan_ref`.

Axis letters: B batch, D channels, L length, N state size, G groups, K+1 stored states.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except ImportError:  # the reference path still works
    HAVE_NUMBA = False

DEFAULT_CHUNK = 64
#: channels per job: the (N, BLOCK) state and the backward's (chunk, N, BLOCK) buffers stay in
#: L1/L2, and B·G·ceil(D/G/BLOCK) jobs are enough to share out between a few threads
BLOCK = 64
#: below this many (b, t, d, n) state updates a call runs on the calling thread alone: handing
#: work to a second thread costs tens of microseconds, as much as the whole scan at that size
MIN_PARALLEL_WORK = 1 << 17
#: LLVM may fuse a * b + c into one fused multiply-add (one rounding instead of two; -25 % time
#: in the forward, -10 % in the backward) but nothing else: no reassociation, no finite-math
#: assumptions, so sums keep their written order and NaN/inf propagate as in plain IEEE code
FASTMATH = {"contract"}


def _numba_cache() -> bool:
    """Whether the kernels below may use numba's on-disk cache. numba refuses to compile a
    ``cache=True`` function (RuntimeError at import) when neither the package's __pycache__, nor
    NUMBA_CACHE_DIR, nor the user cache under HOME is writable (a read-only HOME and install);
    then the cache goes to a per-user folder in the temp dir, or, failing that, is switched off
    with a one-line warning (each process compiles the kernels again, ~seconds)."""
    if not HAVE_NUMBA:
        return False
    import tempfile
    import warnings

    import numba

    def locatable() -> bool:
        try:
            from numba.core.caching import FunctionCache

            FunctionCache(_numba_cache)  # numba's own search for a writable cache folder
        except RuntimeError:
            return False
        except Exception:  # numba internals moved: leave the decision to njit
            return True
        return True

    if locatable():
        return True
    uid = getattr(os, "getuid", lambda: "user")()
    fallback = os.path.join(tempfile.gettempdir(), f"dltricks-numba-cache-{uid}")
    numba.config.CACHE_DIR = fallback
    if locatable():
        os.environ.setdefault("NUMBA_CACHE_DIR", fallback)  # also for worker processes
        return True
    numba.config.CACHE_DIR = ""
    warnings.warn("numba cannot write its cache (read-only install, HOME and temp dir): the CPU "
                  "selective scan is compiled anew in each process; set NUMBA_CACHE_DIR to a "
                  "writable folder to keep it.", RuntimeWarning, stacklevel=2)
    return False


_CACHE = _numba_cache()

if HAVE_NUMBA:

    @intrinsic
    def _f32_from_bits(typingctx, bits):  # pragma: no cover - compiled
        """The float32 whose IEEE-754 bit pattern is the int32 ``bits``."""
        sig = types.float32(types.int32)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return sig, codegen

    @njit(inline="always")
    def _exp32(x):  # pragma: no cover - compiled
        """exp(x) in float32, branch-free so that loops calling it vectorise (≤ 0.99 ulp)."""
        c = min(max(x, np.float32(-104.0)), np.float32(89.0))  # beyond: 0 and inf anyway
        k = np.floor(c * np.float32(1.44269504088896341) + np.float32(0.5))  # round(c / ln 2)
        r = c - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)  # c - k ln 2
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)  # exp(r), |r| <= ln(2) / 2
        k1 = np.int32(np.floor(k * np.float32(0.5)))  # 2^k = 2^k1 · 2^k2, both normal
        k2 = np.int32(k) - k1
        e = (p * _f32_from_bits((k1 + np.int32(127)) << np.int32(23))) * _f32_from_bits(
            (k2 + np.int32(127)) << np.int32(23))
        return x if x != x else e  # NaN stays NaN

    @njit(inline="always")
    def _job(j, groups, dpg, bw):  # pragma: no cover - compiled
        """Job j → (batch b, group g, channels d0:d1): channel blocks of ≤ bw within a group."""
        bpg = (dpg + bw - 1) // bw
        b = j // (groups * bpg)
        blk = j % (groups * bpg)
        g = blk // bpg
        d0 = g * dpg + (blk % bpg) * bw
        return b, g, d0, min(d0 + bw, (g + 1) * dpg)

    @njit(inline="always")
    def _sum(p, w, acc):  # pragma: no cover - compiled
        """p[0] + … + p[w-1] with 16 running sums (a vector register) and a fixed tree: a
        sequential float sum cannot be vectorised without fastmath; this order can."""
        for i in range(16):
            acc[i] = 0.0
        full = w - w % 16
        for i0 in range(0, full, 16):
            for i in range(16):
                acc[i] += p[i0 + i]
        for i in range(full, w):
            acc[i - full] += p[i]
        for h in (8, 4, 2, 1):
            for i in range(h):
                acc[i] += acc[i + h]
        return acc[0]

    @njit(cache=_CACHE, nogil=True, fastmath=FASTMATH)
    def _forward(u, dt, At, Bm, Cm, Dv, z, gate, chunk, bw, lo, hi, y, out,
                 ckpt):  # pragma: no cover - compiled
        # u, dt, z, y, out: (B, L, D); At: (N, D); Bm, Cm: (B, G, L, N); Dv: (D,);
        # ckpt: (B, K+1, N, D). y = Σ_n C x (kept for the backward), out = (y + D u) · silu(z)
        # (without the gate when gate is False; z is then unused). Jobs lo..hi-1 (see _job).
        # The loops over channels d are innermost: unit stride, no reduction, so they
        # vectorise; y's sum over n runs across the loop over n.
        length = u.shape[1]
        ns = At.shape[0]
        groups = Bm.shape[1]
        dpg = u.shape[2] // groups
        last = ckpt.shape[1] - 1
        x = np.empty((ns, bw), dtype=np.float32)
        dtu = np.empty(bw, dtype=np.float32)
        acc = np.empty(bw, dtype=np.float32)
        for j in range(lo, hi):
            b, g, d0, d1 = _job(j, groups, dpg, bw)
            w = d1 - d0
            x[:, :w] = 0.0
            for t in range(length):
                if t % chunk == 0:
                    ckpt[b, t // chunk, :, d0:d1] = x[:, :w]
                dt_t = dt[b, t, d0:d1]
                u_t = u[b, t, d0:d1]
                for d in range(w):
                    dtu[d] = dt_t[d] * u_t[d]
                    acc[d] = 0.0
                b_t = Bm[b, g, t]
                c_t = Cm[b, g, t]
                for n in range(ns):
                    bn = b_t[n]
                    cn = c_t[n]
                    a_n = At[n, d0:d1]
                    x_n = x[n]
                    for d in range(w):
                        v = _exp32(dt_t[d] * a_n[d]) * x_n[d] + dtu[d] * bn
                        x_n[d] = v
                        acc[d] += v * cn
                y_t = y[b, t, d0:d1]
                o_t = out[b, t, d0:d1]
                dv = Dv[d0:d1]
                if gate:
                    z_t = z[b, t, d0:d1]
                    for d in range(w):
                        y_t[d] = acc[d]
                        zz = z_t[d]
                        o_t[d] = (acc[d] + dv[d] * u_t[d]) * (zz / (np.float32(1.0) +
                                                                  _exp32(-zz)))
                else:
                    for d in range(w):
                        y_t[d] = acc[d]
                        o_t[d] = acc[d] + dv[d] * u_t[d]
            ckpt[b, last, :, d0:d1] = x[:, :w]

    @njit(cache=_CACHE, nogil=True, fastmath=FASTMATH)
    def _backward(u, dt, At, Bm, Cm, Dv, z, gate, chunk, bw, lo, hi, ckpt, y, gout, du_o,
                  ddt_o, dz_o, dAt, dDv, dBm, dCm):  # pragma: no cover - compiled
        # gout: (B, L, D) gradient of out; y: the forward's y; du_o, ddt_o, dz_o: (B, L, D);
        # dAt: (N, D); dDv: (D,); dBm, dCm: (B, G, L, N). du_o, ddt_o and dz_o are written
        # (each (b, t, d) by one job); dAt, dDv, dBm and dCm are added to (the caller gives
        # each thread its own when jobs of one thread could collide with another's).
        length = u.shape[1]
        ns = At.shape[0]
        groups = Bm.shape[1]
        dpg = u.shape[2] // groups
        nchunks = (length + chunk - 1) // chunk
        xs = np.empty((chunk + 1, ns, bw), dtype=np.float32)  # states of one chunk
        ea = np.empty((chunk, ns, bw), dtype=np.float32)  # their exp(Δ A)
        dx = np.empty((ns, bw), dtype=np.float32)  # adjoint of the state
        dtu = np.empty(bw, dtype=np.float32)
        g_dt = np.empty(bw, dtype=np.float32)
        g_u = np.empty(bw, dtype=np.float32)
        gyv = np.empty(bw, dtype=np.float32)  # gradient of y_t
        pc = np.empty(bw, dtype=np.float32)  # terms of dC_t[n] = Σ_d g_t[d] x_t[n, d]
        pb = np.empty(bw, dtype=np.float32)  # terms of dB_t[n] = Σ_d dx[n, d] Δ_t[d] u_t[d]
        acc = np.empty(16, dtype=np.float32)
        for j in range(lo, hi):
            b, g, d0, d1 = _job(j, groups, dpg, bw)
            w = d1 - d0
            dx[:, :w] = 0.0
            for c in range(nchunks - 1, -1, -1):
                t0 = c * chunk
                t1 = min(length, t0 + chunk)
                xs[0, :, :w] = ckpt[b, c, :, d0:d1]  # state before step t0
                for t in range(t0, t1):  # recompute the chunk's states
                    k = t - t0
                    dt_t = dt[b, t, d0:d1]
                    u_t = u[b, t, d0:d1]
                    for d in range(w):
                        dtu[d] = dt_t[d] * u_t[d]
                    b_t = Bm[b, g, t]
                    for n in range(ns):
                        bn = b_t[n]
                        a_n = At[n, d0:d1]
                        x0 = xs[k, n]
                        x1 = xs[k + 1, n]
                        e = ea[k, n]
                        for d in range(w):
                            a = _exp32(dt_t[d] * a_n[d])
                            e[d] = a
                            x1[d] = a * x0[d] + dtu[d] * bn
                for t in range(t1 - 1, t0 - 1, -1):
                    k = t - t0
                    dt_t = dt[b, t, d0:d1]
                    u_t = u[b, t, d0:d1]
                    go = gout[b, t, d0:d1]
                    dv = Dv[d0:d1]
                    if gate:  # out = (y + D u) · silu(z), silu(z) = z · s, s = sigmoid(z)
                        z_t = z[b, t, d0:d1]
                        y_t = y[b, t, d0:d1]
                        dz_t = dz_o[b, t, d0:d1]
                        for d in range(w):
                            zz = z_t[d]
                            sg = np.float32(1.0) / (np.float32(1.0) + _exp32(-zz))
                            dz_t[d] = go[d] * (y_t[d] + dv[d] * u_t[d]) * (
                                sg * (np.float32(1.0) + zz * (np.float32(1.0) - sg)))
                            gyv[d] = go[d] * (zz * sg)
                    else:
                        for d in range(w):
                            gyv[d] = go[d]
                    dd = dDv[d0:d1]
                    for d in range(w):
                        dd[d] += gyv[d] * u_t[d]
                    g_t = gyv
                    b_t = Bm[b, g, t]
                    c_t = Cm[b, g, t]
                    db_t = dBm[b, g, t]
                    dc_t = dCm[b, g, t]
                    for d in range(w):
                        g_dt[d] = 0.0
                        g_u[d] = 0.0
                    for n in range(ns):
                        bn = b_t[n]
                        cn = c_t[n]
                        a_n = At[n, d0:d1]
                        da_n = dAt[n, d0:d1]
                        x0 = xs[k, n]
                        x1 = xs[k + 1, n]
                        e = ea[k, n]
                        dx_n = dx[n]
                        for d in range(w):
                            gx = dx_n[d] + g_t[d] * cn  # y_t = Σ C_t x_t
                            pc[d] = g_t[d] * x1[d]
                            a = e[d]
                            ga = gx * x0[d] * a  # through a = exp(Δ A)
                            g_dt[d] += ga * a_n[d] + gx * u_t[d] * bn
                            da_n[d] += ga * dt_t[d]
                            g_u[d] += gx * dt_t[d] * bn
                            pb[d] = gx * dt_t[d] * u_t[d]
                            dx_n[d] = gx * a  # flows to x_{t-1}
                        dc_t[n] += _sum(pc, w, acc)
                        db_t[n] += _sum(pb, w, acc)
                    ddt_o[b, t, d0:d1] = g_dt[:w]
                    du_t = du_o[b, t, d0:d1]
                    for d in range(w):
                        du_t[d] = g_u[d] + gyv[d] * dv[d]  # the scan's path and the D skip


_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The module's helper threads (idle ones sleep on a lock: nothing spins), made anew after
    a fork (a child inherits the executor but not its threads) or when more are needed. A
    replaced executor is not shut down (another Python thread may still be submitting to it):
    once unreferenced, its idle threads are woken and end."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or os.getpid() != _POOL_PID or _POOL._max_workers < workers:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dltricks-scan")
            _POOL_PID = os.getpid()
        return _POOL


def _reset_after_fork() -> None:  # a child may inherit the lock held by a parent's thread
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def plan_threads(threads: int, jobs: int, work: int) -> int:
    """How many threads a call uses: at most ``threads`` and one per job, and one below
    :data:`MIN_PARALLEL_WORK` state updates."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}.")
    return 1 if work < MIN_PARALLEL_WORK else max(1, min(threads, jobs))


def _split(jobs: int, parts: int) -> list[tuple[int, int]]:
    edges = [jobs * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def _run(kernel: Callable[..., None], ranges: list[tuple[int, int]],
         args_of: Callable[[int, int, int], tuple]) -> None:
    """``kernel(*args_of(i, lo, hi))`` for the i-th range (lo, hi): all but the last on helper
    threads, the last on the calling thread (the kernels release the GIL)."""
    if len(ranges) == 1:
        kernel(*args_of(0, *ranges[0]))
        return
    futures = [_pool(len(ranges) - 1).submit(kernel, *args_of(i, lo, hi))
               for i, (lo, hi) in enumerate(ranges[:-1])]
    kernel(*args_of(len(ranges) - 1, *ranges[-1]))
    for f in futures:
        f.result()


def _jobs(nb: int, nd: int, groups: int, bw: int) -> int:
    return nb * groups * (-(-(nd // groups) // bw))


def _gate_args(u: np.ndarray, Dv: np.ndarray | None, z: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, bool]:
    """(Dv, z, gate) for the kernels: zeros for a missing D, a dummy z without a gate."""
    if Dv is None:
        Dv = np.zeros(u.shape[2], dtype=np.float32)
    if z is None:
        return Dv, np.zeros((1, 1, 1), dtype=np.float32), False
    return Dv, z, True


def forward(u: np.ndarray, dt: np.ndarray, At: np.ndarray, Bm: np.ndarray, Cm: np.ndarray,
            Dv: np.ndarray | None = None, z: np.ndarray | None = None,
            chunk: int = DEFAULT_CHUNK, threads: int = 1
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """out = (y + D u) · silu(z) (B, L, D), y = the scan's Σ_n C x (B, L, D), and the states at
    chunk starts and after the last step (B, K+1, N, D).

    Args:
        u, dt: (B, L, D) float32 C-contiguous numpy arrays (Δ after bias and softplus).
        At: (N, D), A transposed. Bm, Cm: (B, G, L, N).
        Dv: (D,) skip, or None. z: (B, L, D) gate, or None.
        chunk: steps between stored states. threads: most threads to use.
    """
    nb, length, nd = u.shape
    ns = At.shape[0]
    bw = min(BLOCK, nd // Bm.shape[1])
    Dv, z, gate = _gate_args(u, Dv, z)
    y = np.empty_like(u)
    out = np.empty_like(u)
    ckpt = np.empty((nb, (length + chunk - 1) // chunk + 1, ns, nd), dtype=np.float32)
    jobs = _jobs(nb, nd, Bm.shape[1], bw)
    ranges = _split(jobs, plan_threads(threads, jobs, nb * length * nd * ns))
    _run(_forward, ranges, lambda i, lo, hi: (u, dt, At, Bm, Cm, Dv, z, gate, chunk, bw, lo, hi,
                                              y, out, ckpt))
    return out, y, ckpt


def backward(u: np.ndarray, dt: np.ndarray, At: np.ndarray, Bm: np.ndarray, Cm: np.ndarray,
             ckpt: np.ndarray, y: np.ndarray, gout: np.ndarray, Dv: np.ndarray | None = None,
             z: np.ndarray | None = None, chunk: int = DEFAULT_CHUNK, threads: int = 1
             ) -> tuple[np.ndarray | None, ...]:
    """Gradients (du, ddt, dAt, dBm, dCm, dD, dz) for the loss gradient ``gout`` (B, L, D) of
    out; dz is None without a gate; the other arguments as given to and returned by
    :func:`forward`."""
    nb, length, nd = u.shape
    ns = At.shape[0]
    bw = min(BLOCK, nd // Bm.shape[1])
    Dv, zz, gate = _gate_args(u, Dv, z)
    jobs = _jobs(nb, nd, Bm.shape[1], bw)
    ranges = _split(jobs, plan_threads(threads, jobs, nb * length * nd * ns))
    du = np.empty_like(u)
    ddt = np.empty_like(dt)
    dz = np.empty_like(u) if gate else np.zeros((1, 1, 1), dtype=np.float32)
    # dA and dD sum over the batch and dB, dC over a group's channels: one partial sum per
    # thread
    parts = len(ranges)
    dAt = np.zeros((parts, *At.shape), dtype=np.float32)
    dDv = np.zeros((parts, nd), dtype=np.float32)
    dBm = np.zeros((parts, *Bm.shape), dtype=np.float32)
    dCm = np.zeros((parts, *Cm.shape), dtype=np.float32)
    _run(_backward, ranges, lambda i, lo, hi: (u, dt, At, Bm, Cm, Dv, zz, gate, chunk, bw, lo,
                                               hi, ckpt, y, gout, du, ddt, dz, dAt[i], dDv[i],
                                               dBm[i], dCm[i]))
    if parts > 1:
        return du, ddt, dAt.sum(0), dBm.sum(0), dCm.sum(0), dDv.sum(0), dz if gate else None
    return du, ddt, dAt[0], dBm[0], dCm[0], dDv[0], dz if gate else None
