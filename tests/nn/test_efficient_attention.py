"""Efficient attention equals dense attention under its own mask, and dense attention when the
restriction is lifted (a window as long as the sequence, an identity Linformer projection, a
one-row axial grid). fp32 tolerance atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3."""

import pytest
import torch

from dltricks.nn.attention import MultiHeadSelfAttention, reference_attention
from dltricks.nn.efficient_attention import (
    AxialSelfAttention,
    LinformerSelfAttention,
    LocalSelfAttention,
    LongformerSelfAttention,
    axial_attention,
    axial_mask,
    local_attention,
    window_mask,
)

FP32 = dict(atol=1e-5, rtol=1e-4)
FP32_GRAD = dict(atol=1e-4, rtol=1e-3)


def qkv(b=2, h=2, n=13, e=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, e, generator=g).requires_grad_() for _ in range(3)]


def padding(b=2, n=13):
    pad = torch.zeros(b, n, dtype=torch.bool)
    pad[1, -4:] = True
    return pad


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [0, 2, 5, 12, 40])
@pytest.mark.parametrize("global_idx", [None, [0], [0, 6, 12]])
@pytest.mark.parametrize("use_pad", [False, True])
def test_local_and_longformer_equal_masked_dense_attention(causal, window, global_idx, use_pad):
    q, k, v = qkv()
    gi = None if global_idx is None else torch.tensor(global_idx)
    pad = padding() if use_pad else None
    out = local_attention(q, k, v, window, causal, pad, gi)
    mask = window_mask(13, window, causal, gi)[None, None]
    if pad is not None:
        mask = mask & ~pad[:, None, None, :]
    ref = reference_attention(q, k, v, mask)
    if pad is not None:  # a padding query may see no key at all; its output is unspecified
        keep = (~pad)[:, None, :, None]
        out, ref = out * keep, ref * keep
    torch.testing.assert_close(out, ref, **FP32)


def test_local_attention_gradients_match_reference():
    q1, k1, v1 = qkv()
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q1, k1, v1))
    gi = torch.tensor([0, 9])
    out = local_attention(q1, k1, v1, 3, True, padding(), gi)
    mask = window_mask(13, 3, True, gi)[None, None] & ~padding()[:, None, None, :]
    ref = reference_attention(q2, k2, v2, mask)
    keep = (~padding())[:, None, :, None]  # padding queries' outputs are unspecified
    out, ref = out * keep, ref * keep
    w = torch.randn_like(ref)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    for a, b in ((q1, q2), (k1, k2), (v1, v2)):
        torch.testing.assert_close(a.grad, b.grad, **FP32_GRAD)


@pytest.mark.parametrize("causal", [False, True])
def test_window_as_long_as_the_sequence_is_dense_attention(causal):
    q, k, v = qkv(n=17)
    dense = reference_attention(q, k, v, causal=causal)
    torch.testing.assert_close(local_attention(q, k, v, 16, causal), dense, **FP32)
    # a shorter window differs
    assert not torch.allclose(local_attention(q, k, v, 4, causal), dense, atol=1e-3)


def copy_projections(src, *dsts):
    for dst in dsts:
        dst.qkv.load_state_dict(src.qkv.state_dict())
        dst.proj.load_state_dict(src.proj.state_dict())


@pytest.mark.parametrize("causal", [False, True])
def test_local_and_longformer_modules_equal_dense_module_with_full_window(causal):
    torch.manual_seed(0)
    dense = MultiHeadSelfAttention(16, 4, causal=causal)
    local = LocalSelfAttention(16, 4, causal=causal, window=20)
    longf = LongformerSelfAttention(16, 4, causal=causal, window=20, global_tokens=[0, 3])
    copy_projections(dense, local, longf)
    x = torch.randn(2, 20, 16)
    pad = torch.zeros(2, 20, dtype=torch.bool)
    pad[0, -5:] = True
    expected = dense(x, pad)
    torch.testing.assert_close(local(x, pad), expected, **FP32)
    torch.testing.assert_close(longf(x, pad), expected, **FP32)


def test_local_attention_is_local():
    torch.manual_seed(0)
    attn = LocalSelfAttention(8, 2, window=2)
    x = torch.randn(1, 12, 8)
    y = x.clone()
    y[:, 11] = torch.randn(8)
    a, b = attn(x), attn(y)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=1e-6)  # |i - 11| > 2
    assert not torch.allclose(a[:, 9:], b[:, 9:])
    # a global token at 0 sees (and is seen by) the far end
    longf = LongformerSelfAttention(8, 2, window=2, global_tokens=1)
    copy_projections(attn, longf)
    a, b = longf(x), longf(y)
    assert not torch.allclose(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 1:9], b[:, 1:9], rtol=0, atol=1e-6)


def test_axial_row_on_a_one_row_grid_is_dense_attention():
    torch.manual_seed(0)
    dense = MultiHeadSelfAttention(16, 4)
    axial = AxialSelfAttention(16, 4, grid_size=(1, 10), axis="row")
    copy_projections(dense, axial)
    x = torch.randn(2, 10, 16)
    torch.testing.assert_close(axial(x), dense(x), **FP32)
    # a one-column grid, along columns, likewise
    axial_col = AxialSelfAttention(16, 4, axis="col")
    copy_projections(dense, axial_col)
    torch.testing.assert_close(axial_col(x, grid_size=(10, 1)), dense(x), **FP32)


@pytest.mark.parametrize("axis", ["row", "col"])
def test_axial_attention_equals_dense_with_row_or_column_mask(axis):
    q, k, v = qkv(n=12)
    out = axial_attention(q, k, v, (3, 4), axis)
    ref = reference_attention(q, k, v, axial_mask((3, 4), axis))
    torch.testing.assert_close(out, ref, **FP32)
    w = torch.randn_like(out)
    g1 = torch.autograd.grad((out * w).sum(), (q, k, v))
    g2 = torch.autograd.grad((ref * w).sum(), (q, k, v))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, **FP32_GRAD)


def test_axial_both_splits_heads_between_rows_and_columns():
    torch.manual_seed(0)
    attn = AxialSelfAttention(16, 4, axis="both")  # 16 tokens → a 4 × 4 grid
    x = torch.randn(2, 16, 16)
    b, n = 2, 16
    q, k, v = attn.qkv(x).view(b, n, 3, 4, 4).permute(2, 0, 3, 1, 4).unbind(0)
    mask = torch.stack([axial_mask((4, 4), "row")] * 2 + [axial_mask((4, 4), "col")] * 2)
    ref = reference_attention(q, k, v, mask[None])  # (B, H, L, E)
    expected = attn.proj(ref.transpose(1, 2).reshape(b, n, 16))
    torch.testing.assert_close(attn(x), expected, **FP32)


def test_axial_bad_arguments():
    with pytest.raises(ValueError, match="grid_size"):
        AxialSelfAttention(8, 2)(torch.randn(1, 12, 8))
    with pytest.raises(ValueError, match="has 12 tokens"):
        AxialSelfAttention(8, 2, grid_size=(3, 5))(torch.randn(1, 12, 8))
    with pytest.raises(ValueError, match="odd"):
        AxialSelfAttention(9, 3)
    with pytest.raises(ValueError, match="not causal"):
        AxialSelfAttention(8, 2, causal=True)
    with pytest.raises(ValueError, match="padding"):
        AxialSelfAttention(8, 2)(torch.randn(1, 4, 8), torch.zeros(1, 4, dtype=torch.bool))


def test_linformer_with_identity_projection_and_k_equal_n_is_dense():
    torch.manual_seed(0)
    dense = MultiHeadSelfAttention(16, 4)
    lin = LinformerSelfAttention(16, 4, seq_len=12, k=12)
    copy_projections(dense, lin)
    with torch.no_grad():
        lin.proj_k.copy_(torch.eye(12))
        lin.proj_v.copy_(torch.eye(12))
    x = torch.randn(2, 12, 16)
    torch.testing.assert_close(lin(x), dense(x), **FP32)
    # with a random projection it is a different (low-rank) operator
    lin2 = LinformerSelfAttention(16, 4, seq_len=12, k=4)
    copy_projections(dense, lin2)
    assert not torch.allclose(lin2(x), dense(x), atol=1e-3)
    lin2(x).sum().backward()
    assert lin2.proj_k.grad.abs().sum() > 0 and lin2.proj_v.grad.abs().sum() > 0


def test_linformer_bad_arguments():
    with pytest.raises(ValueError, match="cannot be causal"):
        LinformerSelfAttention(8, 2, causal=True)
    with pytest.raises(ValueError, match="raise seq_len"):
        LinformerSelfAttention(8, 2, seq_len=4, k=2)(torch.randn(1, 6, 8))
    with pytest.raises(ValueError, match="padding"):
        LinformerSelfAttention(8, 2, seq_len=4)(torch.randn(1, 4, 8),
                                                torch.zeros(1, 4, dtype=torch.bool))
    assert LinformerSelfAttention(8, 2, seq_len=4, share_kv=True).proj_v is None


def test_window_and_global_arguments_checked():
    with pytest.raises(ValueError, match="window"):
        LocalSelfAttention(8, 2, window=-1)
    with pytest.raises(ValueError, match="distinct"):
        LongformerSelfAttention(8, 2, global_tokens=[1, 1])
    # global positions past the input are ignored
    out = LongformerSelfAttention(8, 2, window=1, global_tokens=[0, 50])(torch.randn(1, 5, 8))
    assert out.shape == (1, 5, 8)
    from dltricks.nn.attention import KVCache

    with pytest.raises(ValueError, match="KV cache"):
        LocalSelfAttention(8, 2, causal=True)(torch.randn(1, 3, 8), cache=KVCache())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_efficient_attention_equals_masked_dense():
    tol = dict(atol=1e-3, rtol=1e-3)  # TF32 may be on for the reference matmul
    q, k, v = (t.detach().cuda() for t in qkv(n=144, e=32))
    gi = torch.tensor([0, 50], device="cuda")
    pad = torch.zeros(2, 144, dtype=torch.bool, device="cuda")
    pad[1, -10:] = True
    keep = (~pad)[:, None, :, None]
    out = local_attention(q, k, v, 7, True, pad, gi)
    mask = window_mask(144, 7, True, gi, device="cuda")[None, None] & ~pad[:, None, None, :]
    torch.testing.assert_close(out * keep, reference_attention(q, k, v, mask) * keep, **tol)
    for axis in ("row", "col"):
        torch.testing.assert_close(axial_attention(q, k, v, (12, 12), axis),
                                   reference_attention(q, k, v,
                                                       axial_mask((12, 12), axis, "cuda")),
                                   **tol)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = local_attention(q, k, v, 7, True, None, gi)
    ref = reference_attention(q, k, v, window_mask(144, 7, True, gi, device="cuda"))
    torch.testing.assert_close(low.float(), ref, atol=3e-2, rtol=3e-2)
