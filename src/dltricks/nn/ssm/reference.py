"""Plain reference of the selective scan (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling
with Selective State Spaces", Algorithm 2 and Eq. 2a/2b), written to be obviously correct.

For each batch b, channel d and state n, with Δ = softplus(delta + delta_bias) when asked:

    x_t[n] = exp(Δ_t A[d, n]) · x_{t-1}[n] + Δ_t · B_t[n] · u_t        (zero-order-hold A, Euler B)
    y_t    = Σ_n C_t[n] · x_t[n]  +  D[d] · u_t
    out_t  = y_t · silu(z_t)                                             (when a gate z is given)

The loop runs over time one step at a time and autograd differentiates it; it is slow and keeps
every state, which is the point: the fast kernels are tested against it.

Axis letters: B batch, D channels (d_inner), L length, N state size (d_state), G groups of B/C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _grouped(m: Tensor, name: str, batch: int, length: int) -> Tensor:
    """(B, N, L) or (B, G, N, L) → (B, G, N, L); anything else is an error."""
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[0] != batch or m.shape[-1] != length:
        raise ValueError(
            f"{name} must have shape (batch, d_state, L) or (batch, groups, d_state, L) with "
            f"batch={batch} and L={length}, got {tuple(m.shape)}."
        )
    return m


def check_inputs(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor
) -> tuple[Tensor, Tensor]:
    """Validates shapes; returns B and C as (B, G, N, L)."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(
            f"u and delta must both be (batch, d_inner, L); got {tuple(u.shape)} and "
            f"{tuple(delta.shape)}."
        )
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (d_inner={dim}, d_state), got {tuple(A.shape)}.")
    if A.is_complex():
        raise ValueError("Complex A is not supported; use the real (S4D-real) parametrisation.")
    Bg, Cg = _grouped(B, "B", batch, length), _grouped(C, "C", batch, length)
    if Bg.shape[2] != A.shape[1] or Cg.shape[2] != A.shape[1]:
        raise ValueError(f"B and C must have d_state={A.shape[1]} states like A.")
    if Bg.shape[1] != Cg.shape[1] or dim % Bg.shape[1]:
        raise ValueError(
            f"B and C need the same number of groups, dividing d_inner={dim}; got "
            f"{Bg.shape[1]} and {Cg.shape[1]}."
        )
    return Bg, Cg


def prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[..., None]
    return F.softplus(delta) if delta_softplus else delta


def finish_output(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """Adds the D skip and the SiLU gate: out = (y + D u) · silu(z)."""
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Reference selective scan.

    Args:
        u: input, (B, D, L).
        delta: step sizes before bias/softplus, (B, D, L).
        A: state matrix (diagonal, real), (D, N).
        B: input-dependent input matrix, (B, N, L) or (B, G, N, L).
        C: input-dependent output matrix, (B, N, L) or (B, G, N, L).
        D: skip connection, (D,).
        z: gate, (B, D, L).
        delta_bias: added to delta, (D,).
        delta_softplus: apply softplus to delta (after the bias).
        return_last_state: also return the state after the last step, (B, D, N).

    Returns:
        out (B, D, L) in u's dtype, and the last state (float32, or float64 for float64
        inputs) when asked.
    """
    dtype = u.dtype
    # float32 like the kernels, or float64 when given float64 (a high-precision yardstick)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    Bg, Cg = check_inputs(u, delta, A, B, C)
    u32, A32 = u.to(work), A.to(work)
    dt = prepare_delta(delta.to(work), None if delta_bias is None else delta_bias.to(work),
                       delta_softplus)
    batch, dim, _ = u.shape
    groups = Bg.shape[1]
    Bd = Bg.to(work).repeat_interleave(dim // groups, dim=1)  # (B, D, N, L)
    Cd = Cg.to(work).repeat_interleave(dim // groups, dim=1)
    x = u32.new_zeros(batch, dim, A.shape[1])  # (B, D, N)
    ys = []
    # unbind once: indexing [..., t] inside the loop would make autograd allocate a full-size
    # gradient per step (quadratic in L); unbind's backward stacks the pieces once
    steps = zip(dt.unbind(-1), u32.unbind(-1), Bd.unbind(-1), Cd.unbind(-1), strict=True)
    for dt_t, u_t, b_t, c_t in steps:  # (B, D), (B, D), (B, D, N), (B, D, N)
        dt_t = dt_t[..., None]
        x = torch.exp(dt_t * A32) * x + dt_t * b_t * u_t[..., None]
        ys.append((x * c_t).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    out = finish_output(y, u32, None if D is None else D.to(work),
                        None if z is None else z.to(work)).to(dtype)
    return (out, x) if return_last_state else out
