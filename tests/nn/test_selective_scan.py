"""Selective scan: the fused CPU kernel against the plain reference (outputs and gradients),
long-sequence accuracy, memory of the forward pass, and input errors."""

import pytest
import torch

from dltricks.nn.ssm import cpu_scan, selective_scan, selective_scan_ref

pytestmark = pytest.mark.skipif(not cpu_scan.HAVE_NUMBA, reason="numba not installed")


def make_inputs(batch=2, dim=6, length=37, state=4, groups=None, full=True, seed=0,
                dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    bc = (batch, state, length) if groups is None else (batch, groups, state, length)
    ins = {
        "u": r(batch, dim, length),
        "delta": r(batch, dim, length) * 0.5,
        "A": -torch.rand(dim, state, generator=g) - 0.5,  # S4D-real style: negative real
        "B": r(*bc),
        "C": r(*bc),
    }
    if full:
        ins |= {"D": r(dim), "z": r(batch, dim, length), "delta_bias": r(dim) * 0.1}
    return {k: v.to(dtype).requires_grad_() for k, v in ins.items()}


def run(fn, ins, **kw):
    out = fn(**ins, delta_softplus=True, return_last_state=True, **kw)
    return out


@pytest.mark.parametrize(
    "case",
    [dict(full=False), dict(full=True), dict(groups=2, dim=6), dict(length=1), dict(state=16)],
    ids=["plain", "D-z-bias", "grouped-BC", "L=1", "N=16"],
)
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_cpu_kernel_matches_reference_outputs_and_gradients(case, chunk):
    ins = make_inputs(**case)
    out, last = run(selective_scan, ins, backend="cpu", chunk=chunk)
    ref, ref_last = run(selective_scan_ref, ins)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, list(ins.values()), grad)
    want = torch.autograd.grad(ref, list(ins.values()), grad)
    for name, a, b in zip(ins, got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_runs_on_and_keeps_torchs_thread_count(threads):
    """numba's OpenMP layer resets the OpenMP team size torch reads; the scan must not leak that."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        ins = make_inputs(dim=16, length=50)
        out, _ = run(selective_scan, ins, backend="cpu")
        assert torch.get_num_threads() == threads  # after the forward
        out.sum().backward()
        assert torch.get_num_threads() == threads  # after the backward
        numba = cpu_scan.numba
        assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
        ref, _ = run(selective_scan_ref, {k: v.detach().requires_grad_() for k, v in ins.items()})
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_bf16_inputs_computed_in_float32():
    """bf16 in, bf16 out; both paths compute in float32, so they agree to bf16 rounding."""
    ins = make_inputs(dtype=torch.bfloat16)
    out, _ = run(selective_scan, ins, backend="cpu")
    ref, _ = run(selective_scan_ref, ins)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=1.6e-2, atol=1e-2)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, list(ins.values()), g),
                    torch.autograd.grad(ref, list(ins.values()), g), strict=True):
        assert a.dtype == b.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b.float(), rtol=5e-2, atol=5e-2)


def test_long_sequence_stays_accurate_in_float32():
    """L = 16384 in float32 against a float64 reference: no drift (the pitfall of chunked
    log-space products)."""
    ins = make_inputs(batch=1, dim=3, length=16384, state=4, seed=1)
    out, last = run(selective_scan, ins, backend="cpu")
    ref, ref_last = run(selective_scan_ref, {k: v.detach().double() for k, v in ins.items()})
    err = (out.double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5, float(err)
    assert (last.double() - ref_last).abs().max() / ref_last.abs().max() < 1e-5


def test_forward_saves_no_full_state_tensor():
    """The saved tensors hold chunk-start states only: O(B·D·N·L/chunk), not O(B·D·N·L)."""
    ins = make_inputs(batch=2, dim=8, length=256, state=16, full=False)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selective_scan(**ins, backend="cpu", chunk=64)
    full = 2 * 8 * 256 * 16  # the (B, D, L, N) state tensor the kernel must not keep
    assert max(sizes) <= full / 8, sorted(sizes)[-3:]


def test_auto_backend_uses_the_kernel_on_cpu_and_matches(monkeypatch):
    calls = []
    real = cpu_scan.forward
    monkeypatch.setattr(cpu_scan, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    ins = make_inputs()
    a = selective_scan(**ins, delta_softplus=True)
    assert calls  # "auto" chose the fused kernel on CPU
    b = selective_scan(**ins, delta_softplus=True, backend="ref")
    assert len(calls) == 1
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(u=torch.zeros(2, 6)), "u and delta"),
        (dict(A=torch.zeros(5, 4)), "A must be"),
        (dict(B=torch.zeros(2, 3, 37)), "d_state=4"),
        (dict(C=torch.zeros(2, 4, 36)), "C must have shape"),
        (dict(B=torch.zeros(2, 4, 4, 37), C=torch.zeros(2, 4, 4, 37)), "dividing d_inner"),
        (dict(A=torch.zeros(6, 4, dtype=torch.complex64)), "Complex A"),
    ],
)
def test_bad_inputs_are_clear_errors(change, message):
    ins = {k: v.detach() for k, v in make_inputs(full=False).items()} | change
    with pytest.raises(ValueError, match=message):
        selective_scan(**ins, backend="cpu")


def test_backend_errors():
    ins = {k: v.detach() for k, v in make_inputs(full=False).items()}
    with pytest.raises(ValueError, match="Unknown backend"):
        selective_scan(**ins, backend="triton")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        selective_scan(**ins, backend="cuda")
    with pytest.raises(ValueError, match="chunk"):
        selective_scan(**ins, chunk=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_match_the_cpu_kernel():
    """On a GPU, "auto" uses mamba-ssm when installed, else the reference on the device; either
    way the result equals the CPU kernel's."""
    ins = make_inputs(length=64)
    out, last = run(selective_scan, ins, backend="cpu")
    cuda_ins = {k: v.detach().cuda().requires_grad_() for k, v in ins.items()}
    out_cuda, last_cuda = run(selective_scan, cuda_ins)
    torch.testing.assert_close(out_cuda.cpu(), out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last_cuda.float().cpu(), last, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out_cuda, list(cuda_ins.values()), g.cuda()),
                    torch.autograd.grad(out, list(ins.values()), g), strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mamba_lm_on_cuda_step_equals_forward():
    from dltricks.models.mamba import MambaLM

    torch.manual_seed(0)
    lm = MambaLM(vocab_size=13, dim=16, n_layers=2, d_state=4).cuda().eval()
    tokens = torch.randint(0, 13, (2, 10), device="cuda")
    states = lm.init_state(2)
    steps = torch.stack([lm.step(tokens[:, t], states) for t in range(10)], dim=1)
    torch.testing.assert_close(steps, lm(tokens), rtol=1e-4, atol=1e-4)


def test_importable_from_dltricks_nn_as_the_issue_names_it():
    import dltricks.nn

    assert dltricks.nn.selective_scan is selective_scan
    assert dltricks.nn.selective_scan_ref is selective_scan_ref
