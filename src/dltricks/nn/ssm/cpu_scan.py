"""Fused selective scan for the CPU (numba), with its own backward pass.

Why a sequential loop: on a CPU with a few cores, a loop over time with the state in registers
beats a Blelloch parallel scan (which does about twice the work and needs the whole
(B, D, L, N) tensor), and it stays accurate in float32 at any length, unlike chunked log-space
cumulative products. Parallelism comes from the independent (batch, channel) pairs instead.

Forward: each (b, d) runs x_t = exp(Δ_t A) x_{t-1} + Δ_t u_t B_t, y_t = C_t·x_t with x in a
length-N buffer, and stores the state only at chunk starts (every ``chunk`` steps), so memory is
O(B·D·N·L/chunk) instead of O(B·D·N·L). The (B, D, L, N) state tensor is never built.

Backward: chunks are visited from the last to the first; each chunk's states are recomputed from
its stored start state into a chunk-sized buffer, then the adjoint dx_t = C_t g_t + exp(Δ_{t+1} A)
dx_{t+1} runs backwards through it, giving du, dΔ, dA, dB and dC. dB and dC are shared by the
channels of a group, so each worker thread accumulates into its own slice and the slices are
summed at the end (no write races).

The exponential: exp(Δ_t A[d, n]) is most of the work (N of them per step). libm's expf is a
call that stops the compiler from vectorising the loop over n, so :func:`_exp32` computes it
with plain float32 arithmetic that LLVM turns into AVX2 code: Cody-Waite range reduction, the
Cephes degree-6 polynomial, and 2^k assembled from exponent bits in two factors (so that results
that underflow into subnormals round once, as libm's do). Its error is at most 0.99 ulp against
float64 exp over [-110, 89] (libm's expf: 0.50 ulp); NaN, ±inf, overflow to inf and underflow
to 0 match libm. The backward pass keeps each chunk's exp(Δ A) from the recomputation instead of
computing it a second time.

Reference: Gu & Dao 2023 (Mamba), Algorithm 2; the gradient is the standard adjoint of a
diagonal linear recurrence. Tested against :func:`dltricks.nn.ssm.reference.selective_scan_ref`.

Axis letters: B batch, D channels, L length, N state size, G groups, W worker slices.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except ImportError:  # the reference path still works
    HAVE_NUMBA = False

DEFAULT_CHUNK = 64

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

    @njit(parallel=True, cache=True, fastmath=False)
    def _forward(u, dt, A, Bt, Ct, chunk, y, ckpt):  # pragma: no cover - compiled
        # u, dt: (B, D, L); A: (D, N); Bt, Ct: (B, G, L, N); y: (B, D, L); ckpt: (B, D, K+1, N)
        nb, nd, length = u.shape
        ns = A.shape[1]
        dpg = nd // Bt.shape[1]
        for idx in prange(nb * nd):
            b = idx // nd
            d = idx % nd
            g = d // dpg
            a_d = A[d]
            x = np.zeros(ns, dtype=np.float32)
            for t in range(length):
                if t % chunk == 0:
                    ckpt[b, d, t // chunk, :] = x
                dtt = dt[b, d, t]
                du = dtt * u[b, d, t]
                b_t = Bt[b, g, t]
                c_t = Ct[b, g, t]
                for n in range(ns):  # no reduction in this loop: it vectorises
                    x[n] = _exp32(dtt * a_d[n]) * x[n] + du * b_t[n]
                acc = np.float32(0.0)
                for n in range(ns):
                    acc += x[n] * c_t[n]
                y[b, d, t] = acc
            ckpt[b, d, ckpt.shape[2] - 1, :] = x

    @njit(parallel=True, cache=True, fastmath=False)
    def _backward(u, dt, A, Bt, Ct, chunk, ckpt, gy, du_o, ddt_o, dA_o, dBw, dCw):
        # gy: (B, D, L) gradient of y; outputs du_o, ddt_o: (B, D, L); dA_o: (D, N);
        # dBw, dCw: (W, B, G, L, N) per-worker partial sums
        nb, nd, length = u.shape
        ns = A.shape[1]
        dpg = nd // Bt.shape[1]
        nw = dBw.shape[0]
        nchunks = (length + chunk - 1) // chunk
        for w in prange(nw):
            xs = np.zeros((chunk + 1, ns), dtype=np.float32)  # states of one chunk
            ea = np.zeros((chunk, ns), dtype=np.float32)  # their exp(Δ A)
            dx = np.zeros(ns, dtype=np.float32)
            for d in range(w, nd, nw):  # channel d belongs to worker w alone
                g = d // dpg
                a_d = A[d]
                for b in range(nb):
                    dx[:] = 0.0
                    for c in range(nchunks - 1, -1, -1):
                        t0 = c * chunk
                        t1 = min(length, t0 + chunk)
                        xs[0, :] = ckpt[b, d, c, :]  # state before step t0
                        for t in range(t0, t1):  # recompute the chunk's states
                            dtt = dt[b, d, t]
                            du = dtt * u[b, d, t]
                            k = t - t0
                            b_t = Bt[b, g, t]
                            for n in range(ns):
                                a = _exp32(dtt * a_d[n])
                                ea[k, n] = a
                                xs[k + 1, n] = a * xs[k, n] + du * b_t[n]
                        for t in range(t1 - 1, t0 - 1, -1):
                            k = t - t0
                            dtt = dt[b, d, t]
                            ut = u[b, d, t]
                            gt = gy[b, d, t]
                            b_t = Bt[b, g, t]
                            c_t = Ct[b, g, t]
                            dc_t = dCw[w, b, g, t]
                            db_t = dBw[w, b, g, t]
                            g_dt = np.float32(0.0)
                            g_u = np.float32(0.0)
                            for n in range(ns):
                                dx[n] += gt * c_t[n]  # y_t = Σ C_t x_t
                                dc_t[n] += gt * xs[k + 1, n]
                                a = ea[k, n]
                                ga = dx[n] * xs[k, n] * a  # through a = exp(Δ A)
                                g_dt += ga * a_d[n] + dx[n] * ut * b_t[n]
                                dA_o[d, n] += ga * dtt
                                g_u += dx[n] * dtt * b_t[n]
                                db_t[n] += dx[n] * dtt * ut
                                dx[n] = dx[n] * a  # flows to x_{t-1}
                            ddt_o[b, d, t] = g_dt
                            du_o[b, d, t] = g_u


def set_threads(n: int) -> None:
    """Use ``n`` threads (at most numba's pool size) for this thread's kernel launches."""
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def forward(u, dt, A, Bt, Ct, chunk: int = DEFAULT_CHUNK):
    """y (B, D, L) and chunk-start states (B, D, K+1, N); inputs float32 contiguous numpy."""
    nb, nd, length = u.shape
    y = np.empty((nb, nd, length), dtype=np.float32)
    ckpt = np.empty((nb, nd, (length + chunk - 1) // chunk + 1, A.shape[1]), dtype=np.float32)
    _forward(u, dt, A, Bt, Ct, chunk, y, ckpt)
    return y, ckpt


def backward(u, dt, A, Bt, Ct, ckpt, gy, chunk: int = DEFAULT_CHUNK):
    """Gradients (du, ddt, dA, dBt, dCt) for the loss gradient ``gy`` of y."""
    nd = u.shape[1]
    nw = max(1, min(nd, numba.get_num_threads() * 2))
    du = np.zeros_like(u)
    ddt = np.zeros_like(dt)
    dA = np.zeros_like(A)
    dBw = np.zeros((nw, *Bt.shape), dtype=np.float32)
    dCw = np.zeros((nw, *Ct.shape), dtype=np.float32)
    _backward(u, dt, A, Bt, Ct, chunk, ckpt, gy, du, ddt, dA, dBw, dCw)
    return du, ddt, dA, dBw.sum(0), dCw.sum(0)
