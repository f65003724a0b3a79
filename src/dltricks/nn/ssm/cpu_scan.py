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

Reference: Gu & Dao 2023 (Mamba), Algorithm 2; the gradient is the standard adjoint of a
diagonal linear recurrence. Tested against :func:`dltricks.nn.ssm.reference.selective_scan_ref`.

Axis letters: B batch, D channels, L length, N state size, G groups, W worker slices.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # the reference path still works
    HAVE_NUMBA = False

DEFAULT_CHUNK = 64

if HAVE_NUMBA:

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
            x = np.zeros(ns, dtype=np.float32)
            for t in range(length):
                if t % chunk == 0:
                    ckpt[b, d, t // chunk, :] = x
                dtt = dt[b, d, t]
                du = dtt * u[b, d, t]
                acc = np.float32(0.0)
                for n in range(ns):
                    x[n] = math.exp(dtt * A[d, n]) * x[n] + du * Bt[b, g, t, n]
                    acc += x[n] * Ct[b, g, t, n]
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
            xs = np.zeros((chunk + 1, ns), dtype=np.float32)
            dx = np.zeros(ns, dtype=np.float32)
            for d in range(w, nd, nw):  # channel d belongs to worker w alone
                g = d // dpg
                for b in range(nb):
                    dx[:] = 0.0
                    for c in range(nchunks - 1, -1, -1):
                        t0 = c * chunk
                        t1 = min(length, t0 + chunk)
                        xs[0, :] = ckpt[b, d, c, :]  # state before step t0
                        for t in range(t0, t1):  # recompute the chunk's states
                            dtt = dt[b, d, t]
                            du = dtt * u[b, d, t]
                            k = t - t0 + 1
                            for n in range(ns):
                                a = math.exp(dtt * A[d, n])
                                xs[k, n] = a * xs[k - 1, n] + du * Bt[b, g, t, n]
                        for t in range(t1 - 1, t0 - 1, -1):
                            k = t - t0 + 1
                            dtt = dt[b, d, t]
                            ut = u[b, d, t]
                            gt = gy[b, d, t]
                            g_dt = np.float32(0.0)
                            g_u = np.float32(0.0)
                            for n in range(ns):
                                dx[n] += gt * Ct[b, g, t, n]  # y_t = Σ C_t x_t
                                dCw[w, b, g, t, n] += gt * xs[k, n]
                                a = math.exp(dtt * A[d, n])
                                xp = xs[k - 1, n]
                                ga = dx[n] * xp * a  # through a = exp(Δ A)
                                g_dt += ga * A[d, n] + dx[n] * ut * Bt[b, g, t, n]
                                dA_o[d, n] += ga * dtt
                                g_u += dx[n] * dtt * Bt[b, g, t, n]
                                dBw[w, b, g, t, n] += dx[n] * dtt * ut
                                dx[n] = dx[n] * a  # flows to x_{t-1}
                            ddt_o[b, d, t] = g_dt
                            du_o[b, d, t] = g_u


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
