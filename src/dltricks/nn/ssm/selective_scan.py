"""``selective_scan``: one entry point, three implementations.

A drop-in for mamba-ssm's ``selective_scan_fn`` (same arguments and semantics, see
:mod:`dltricks.nn.ssm.reference`), which picks:

- ``"cuda"``: mamba-ssm's CUDA kernel, when the package is installed and the tensors are on a GPU;
- ``"cpu"``: the fused numba kernel of :mod:`dltricks.nn.ssm.cpu_scan` with its own backward
  (CPU tensors, numba installed), D skip and gate included; it runs on torch's thread count
  (``torch.get_num_threads()``), so a process that set one thread scans on one thread;
- ``"ref"``: the plain PyTorch loop (always available; any device).

``backend="auto"`` takes the first that applies. Inputs in bf16/fp16 are computed in float32 and
the output is cast back, as the reference does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dltricks.nn.ssm import cpu_scan
from dltricks.nn.ssm.reference import check_inputs, prepare_delta, selective_scan_ref

BACKENDS = ("auto", "cuda", "cpu", "ref")


def _mamba_ssm_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or built for another CUDA
        return None
    return selective_scan_fn


class _CPUScan(torch.autograd.Function):
    """out = (scan(u, Δ, A, B, C) + D u) · silu(z) on the CPU, float32, in the kernel's layout:
    u, Δ, z and out (B, L, D), A transposed (N, D), B and C (B, G, L, N), all contiguous; D
    and z may be None."""

    @staticmethod
    def forward(ctx, u, dt, At, Bm, Cm, D, z, chunk):
        threads = torch.get_num_threads()  # a worker's set_num_threads(1) holds for the scan
        arrays = [None if t is None else t.detach().numpy() for t in (u, dt, At, Bm, Cm, D, z)]
        out, y, ckpt = cpu_scan.forward(*arrays, chunk=chunk, threads=threads)
        ckpt_t = torch.from_numpy(ckpt)
        ctx.save_for_backward(u, dt, At, Bm, Cm, D, z, ckpt_t, torch.from_numpy(y))
        ctx.chunk = chunk
        ctx.mark_non_differentiable(ckpt_t)
        return torch.from_numpy(out), ckpt_t

    @staticmethod
    def backward(ctx, gout, _gckpt):
        u, dt, At, Bm, Cm, D, z, ckpt, y = (None if t is None else t.detach().numpy()
                                            for t in ctx.saved_tensors)
        du, ddt, dAt, dBm, dCm, dD, dz = cpu_scan.backward(
            u, dt, At, Bm, Cm, ckpt, y, gout.float().contiguous().numpy(), D, z,
            chunk=ctx.chunk, threads=torch.get_num_threads())
        grads = [du, ddt, dAt, dBm, dCm, dD, dz]
        return (*(torch.from_numpy(g) if g is not None and need else None
                  for g, need in zip(grads, ctx.needs_input_grad, strict=False)), None)


def selective_scan(
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
    backend: str = "auto",
    chunk: int = cpu_scan.DEFAULT_CHUNK,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan (Gu & Dao 2023) with mamba-ssm's ``selective_scan_fn`` signature.

    Args:
        u: (B, D, L). delta: (B, D, L). A: (D, N), real. B, C: (B, N, L) or (B, G, N, L).
        D: (D,) skip. z: (B, D, L) gate. delta_bias: (D,). delta_softplus: softplus on delta.
        return_last_state: also return the final state (B, D, N), float32.
        backend: "auto", "cuda", "cpu" or "ref" (see the module docstring).
        chunk: CPU kernel's checkpoint interval (memory vs recomputation; 64 is a good default).

    Returns:
        out (B, D, L) in u's dtype [, last_state (B, D, N)].
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}.")
    on_cuda = u.is_cuda
    if backend in ("auto", "cuda") and on_cuda and (fn := _mamba_ssm_fn()) is not None:
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if backend == "cuda":
        raise ValueError("backend 'cuda' needs CUDA tensors and the mamba-ssm package.")
    use_cpu = backend in ("auto", "cpu") and not on_cuda and cpu_scan.HAVE_NUMBA
    if backend == "cpu" and not use_cpu:
        raise ValueError("backend 'cpu' needs CPU tensors and numba.")
    if not use_cpu:
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state)
    Bg, Cg = check_inputs(u, delta, A, B, C)
    # the kernel reads D and z unchecked: a wrong shape must be an error here
    if D is not None and tuple(D.shape) != (u.shape[1],):
        raise ValueError(f"D must be (d_inner={u.shape[1]},), got {tuple(D.shape)}.")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}.")
    dtype = u.dtype
    u32 = u.float()
    dt = prepare_delta(delta.float(), None if delta_bias is None else delta_bias.float(),
                       delta_softplus)
    # the kernel's layout, (B, L, D): a Mamba block's projections already produce it, so for
    # them these are views, not copies
    ul = u32.transpose(1, 2).contiguous()
    dtl = dt.transpose(1, 2).contiguous()
    zl = None if z is None else z.float().transpose(1, 2).contiguous()
    Bm = Bg.float().transpose(-1, -2).contiguous()  # (B, G, L, N): N contiguous
    Cm = Cg.float().transpose(-1, -2).contiguous()
    out, ckpt = _CPUScan.apply(ul, dtl, A.float().t().contiguous(), Bm, Cm,
                               None if D is None else D.float().contiguous(), zl, chunk)
    out = out.transpose(1, 2).to(dtype)
    return (out, ckpt[:, -1].transpose(1, 2)) if return_last_state else out
