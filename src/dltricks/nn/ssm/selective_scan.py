"""``selective_scan``: one entry point, three implementations.

A drop-in for mamba-ssm's ``selective_scan_fn`` (same arguments and semantics, see
:mod:`dltricks.nn.ssm.reference`), which picks:

- ``"cuda"``: mamba-ssm's CUDA kernel, when the package is installed and the tensors are on a GPU;
- ``"cpu"``: the fused numba kernel of :mod:`dltricks.nn.ssm.cpu_scan` with its own backward
  (CPU tensors, numba installed);
- ``"ref"``: the plain PyTorch loop (always available; any device).

``backend="auto"`` takes the first that applies. Inputs in bf16/fp16 are computed in float32 and
the output is cast back, as the reference does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from dltricks.nn.ssm import cpu_scan
from dltricks.nn.ssm.reference import (
    check_inputs,
    finish_output,
    prepare_delta,
    selective_scan_ref,
)

BACKENDS = ("auto", "cuda", "cpu", "ref")


def _mamba_ssm_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or built for another CUDA
        return None
    return selective_scan_fn


@contextmanager
def _torch_thread_count() -> Iterator[None]:
    """Run the numba kernel on torch's thread count, and leave torch's count as it was.

    numba's OpenMP threading layer sets the calling thread's OpenMP team size to numba's own
    count at every parallel launch, and torch reads that same setting: without this, a user's
    ``torch.set_num_threads(1)`` silently became the machine's core count after the first scan.
    """
    n = torch.get_num_threads()
    cpu_scan.set_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


class _CPUScan(torch.autograd.Function):
    """y = scan(u, Δ, A, B, C) on the CPU, float32; B and C as (B, G, L, N)."""

    @staticmethod
    def forward(ctx, u, dt, A, Bt, Ct, chunk):
        arrays = [t.detach().contiguous().numpy() for t in (u, dt, A, Bt, Ct)]
        with _torch_thread_count():
            y, ckpt = cpu_scan.forward(*arrays, chunk=chunk)
        ckpt_t = torch.from_numpy(ckpt)
        ctx.save_for_backward(u, dt, A, Bt, Ct, ckpt_t)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(ckpt_t)
        return torch.from_numpy(y), ckpt_t

    @staticmethod
    def backward(ctx, gy, _gckpt):
        u, dt, A, Bt, Ct, ckpt = ctx.saved_tensors
        arrays = [t.detach().contiguous().numpy() for t in (u, dt, A, Bt, Ct, ckpt)]
        with _torch_thread_count():
            grads = cpu_scan.backward(*arrays, gy.contiguous().float().numpy(), chunk=ctx.chunk)
        return (*(torch.from_numpy(g) for g in grads), None)


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
    dtype = u.dtype
    u32 = u.float()
    dt = prepare_delta(delta.float(), None if delta_bias is None else delta_bias.float(),
                       delta_softplus)
    Bt = Bg.float().transpose(-1, -2)  # (B, G, L, N): the kernel reads N contiguously
    Ct = Cg.float().transpose(-1, -2)
    y, ckpt = _CPUScan.apply(u32, dt, A.float(), Bt, Ct, chunk)
    out = finish_output(y, u32, None if D is None else D.float(),
                        None if z is None else z.float()).to(dtype)
    return (out, ckpt[:, :, -1]) if return_last_state else out
