"""Selective scan: the fused CPU kernel against the plain reference (outputs and gradients),
long-sequence accuracy, memory of the forward pass, and input errors."""

import threading

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


@pytest.mark.parametrize("drop", ["D", "z", "delta_bias"])
def test_cpu_kernel_with_d_or_gate_alone_matches_reference(drop):
    """The kernel fuses the D skip and the SiLU gate: each works without the other."""
    ins = make_inputs(length=19)
    del ins[drop]
    out, last = run(selective_scan, ins, backend="cpu", chunk=8)
    ref, ref_last = run(selective_scan_ref, ins)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    for name, a, b in zip(ins, torch.autograd.grad(out, list(ins.values()), g),
                          torch.autograd.grad(ref, list(ins.values()), g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_runs_on_and_keeps_torchs_thread_count(threads, monkeypatch):
    """The scan splits its work over torch's thread count and leaves that count alone; at one
    thread (a lab worker's ``torch.set_num_threads(1)``) it starts no helper thread at all."""
    monkeypatch.setattr(cpu_scan, "MIN_PARALLEL_WORK", 0)  # split even this small problem
    parts = []
    real = cpu_scan._run
    monkeypatch.setattr(cpu_scan, "_run",
                        lambda kernel, ranges, args: parts.append(len(ranges)) or
                        real(kernel, ranges, args))
    before = torch.get_num_threads()
    helpers = {t.ident for t in threading.enumerate() if t.name.startswith("dltricks-scan")}
    try:
        torch.set_num_threads(threads)
        ins = make_inputs(dim=16, length=50)
        out, _ = run(selective_scan, ins, backend="cpu")
        assert torch.get_num_threads() == threads  # after the forward
        out.sum().backward()
        assert torch.get_num_threads() == threads  # after the backward
        assert parts == [threads, threads]  # forward, backward
        if threads == 1:
            assert {t.ident for t in threading.enumerate()
                    if t.name.startswith("dltricks-scan")} <= helpers
        ref, _ = run(selective_scan_ref, {k: v.detach().requires_grad_() for k, v in ins.items()})
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_scan_starts_no_second_threading_runtime():
    """One thread pool per process: the kernels never start numba's threading layer (an OpenMP
    runtime of its own beside torch's, whose spinning threads fought torch's under load)."""
    from numba.np.ufunc import parallel

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        ins = make_inputs(batch=4, dim=64, length=300, state=16)
        run(selective_scan, ins, backend="cpu")[0].sum().backward()
    finally:
        torch.set_num_threads(before)
    assert not parallel._is_initialized


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-4),
                                        (torch.bfloat16, 5e-2)], ids=["f32", "f64", "bf16"])
@pytest.mark.parametrize("threads, block", [(1, 4), (2, 4), (3, 4), (2, 64)])
def test_threaded_and_blocked_kernel_matches_reference(threads, block, dtype, tol,
                                                        monkeypatch):
    """Every way of cutting the work gives the reference's outputs and gradients: channel blocks
    that split a group (block 4 of a group of 6: a 4 and a 2), jobs of one group on different
    threads (whose dA, dB, dC partial sums are added), and the 16-wide sums of dB and dC over
    blocks that are not a multiple of 16 wide (group of 37 channels at block 64)."""
    monkeypatch.setattr(cpu_scan, "MIN_PARALLEL_WORK", 0)
    monkeypatch.setattr(cpu_scan, "BLOCK", block)
    dim = 12 if block == 4 else 74
    ins = make_inputs(batch=3, dim=dim, length=21, state=5, groups=2, dtype=dtype)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        out, last = run(selective_scan, ins, backend="cpu", chunk=8)
    finally:
        torch.set_num_threads(before)
    ref, ref_last = run(selective_scan_ref, ins)
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    torch.testing.assert_close(last.to(ref_last.dtype), ref_last, rtol=tol, atol=tol)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    try:
        torch.set_num_threads(threads)
        got = torch.autograd.grad(out, list(ins.values()), grad)
    finally:
        torch.set_num_threads(before)
    want = torch.autograd.grad(ref, list(ins.values()), grad)
    for name, a, b in zip(ins, got, want, strict=True):
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_helper_threads_are_made_anew_after_a_fork(monkeypatch):
    """A forked child (a lab worker) inherits the executor object but not its threads."""
    pool = cpu_scan._pool(1)
    assert cpu_scan._pool(1) is pool
    monkeypatch.setattr(cpu_scan, "_POOL_PID", -1)  # as seen from a child process
    assert cpu_scan._pool(1) is not pool


def test_plan_threads():
    assert cpu_scan.plan_threads(4, jobs=2, work=10**9) == 2  # one thread per job at most
    assert cpu_scan.plan_threads(4, jobs=64, work=10) == 1  # tiny: the calling thread alone
    assert cpu_scan.plan_threads(1, jobs=64, work=10**9) == 1
    with pytest.raises(ValueError, match="threads must be >= 1"):
        cpu_scan.plan_threads(0, jobs=1, work=1)


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
        (dict(D=torch.zeros(5)), "D must be"),
        (dict(z=torch.zeros(2, 6, 36)), "z must have"),
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


@pytest.mark.parametrize("bias", [True, False])
def test_mamba_block_conv_fast_path_matches_conv1d_module(bias):
    """The Mamba block's shifted multiply-add conv equals calling its nn.Conv1d (the
    reference): outputs and the gradients of the input and of every parameter."""
    from dltricks.nn.ssm.mamba_block import MambaBlock

    torch.manual_seed(0)
    blk = MambaBlock(16, d_state=4, conv_bias=bias)
    h = torch.randn(3, 11, 16, requires_grad=True)

    def run():
        out = blk(h)
        names = ["h", *(n for n, _ in blk.named_parameters())]
        return out, dict(zip(names, torch.autograd.grad(out.square().sum(),
                                                        [h, *blk.parameters()]), strict=True))

    fast, fast_grads = run()
    blk._conv_silu = blk._conv_silu_module  # the reference path
    ref, ref_grads = run()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    for name, g in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], g, rtol=1e-4, atol=1e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_mamba_block_calls_a_hooked_conv_as_a_module():
    """A conv1d with hooks (pruning, quantisation observers) is called, not bypassed."""
    from dltricks.nn.ssm.mamba_block import MambaBlock

    blk = MambaBlock(8, d_state=4)
    calls = []
    blk.conv1d.register_forward_hook(lambda *a: calls.append(1))
    blk(torch.randn(2, 5, 8))
    assert calls == [1]
