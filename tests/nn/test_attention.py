"""Tests for SDPA multi-head self-attention, the written-out reference and the KV cache.

Tolerances: fp32 outputs atol 1e-5 / rtol 1e-4 and gradients atol 1e-4 / rtol 1e-3 (the two
paths sum in different orders); bf16 atol = rtol = 3e-2 (8-bit mantissa, ~4e-3 per rounding,
accumulated over the softmax and the value sum).
"""

import pytest
import torch
from torch import nn

from dltricks.nn.attention import (
    KVCache,
    MultiHeadSelfAttention,
    causal_mask,
    combine_masks,
    reference_attention,
    sdpa_attention,
)
from dltricks.nn.position import RotaryEmbedding

FP32 = dict(atol=1e-5, rtol=1e-4)
FP32_GRAD = dict(atol=1e-4, rtol=1e-3)
BF16 = dict(atol=3e-2, rtol=3e-2)


def qkv(b=2, h=3, n=11, s=None, e=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = n if s is None else s
    return [torch.randn(b, h, m, e, generator=g).to(dtype).requires_grad_()
            for m in (n, s, s)]


def masks(b=2, n=11, s=11):
    pad = torch.zeros(b, s, dtype=torch.bool)
    pad[1, -3:] = True
    rand = torch.rand(n, s, generator=torch.Generator().manual_seed(1)) > 0.3
    return {
        "none": dict(attn_mask=None, causal=False),
        "causal": dict(attn_mask=None, causal=True),
        "padding": dict(attn_mask=combine_masks(n, s, padding_mask=pad), causal=False),
        "padding+causal": dict(attn_mask=combine_masks(n, s, padding_mask=pad), causal=True),
        "random": dict(attn_mask=rand, causal=False),
    }


def test_causal_mask_is_bottom_right_aligned():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.equal(causal_mask(3, 3), torch.ones(3, 3, dtype=torch.bool).tril())
    with pytest.raises(ValueError, match="at least as many keys"):
        causal_mask(4, 2)


@pytest.mark.parametrize("kind", list(masks()))
def test_sdpa_matches_reference_outputs_and_gradients_fp32(kind):
    kw = masks()[kind]
    q1, k1, v1 = qkv()
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q1, k1, v1))
    fast, ref = sdpa_attention(q1, k1, v1, **kw), reference_attention(q2, k2, v2, **kw)
    torch.testing.assert_close(fast, ref, **FP32)
    w = torch.randn_like(ref)
    (fast * w).sum().backward()
    (ref * w).sum().backward()
    for a, b in ((q1, q2), (k1, k2), (v1, v2)):
        torch.testing.assert_close(a.grad, b.grad, **FP32_GRAD)


def test_sdpa_matches_reference_with_fewer_queries_than_keys():
    q, k, v = qkv(n=3, s=9)
    torch.testing.assert_close(sdpa_attention(q, k, v, causal=True),
                               reference_attention(q, k, v, causal=True), **FP32)
    # the last query sees every key: plain attention
    torch.testing.assert_close(sdpa_attention(q, k, v, causal=True)[:, :, -1],
                               reference_attention(q, k, v)[:, :, -1], **FP32)


@pytest.mark.parametrize("kind", ["none", "causal", "padding"])
def test_sdpa_matches_reference_bf16(kind):
    kw = masks()[kind]
    q, k, v = qkv(dtype=torch.bfloat16)
    fast, ref = sdpa_attention(q, k, v, **kw), reference_attention(q, k, v, **kw)
    assert fast.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), ref.float(), **BF16)
    # and both stay near the fp32 result
    exact = reference_attention(*(t.float() for t in (q, k, v)), **kw)
    torch.testing.assert_close(fast.float(), exact, **BF16)


def test_reference_is_the_written_out_formula():
    q, k, v = (t.detach() for t in qkv(b=1, h=1, n=4, e=2))
    scores = q[0, 0] @ k[0, 0].T / 2 ** 0.5
    expected = torch.exp(scores) / torch.exp(scores).sum(1, keepdim=True) @ v[0, 0]
    torch.testing.assert_close(reference_attention(q, k, v)[0, 0], expected, **FP32)


def test_fully_masked_rows_stay_finite():
    q, k, v = qkv(n=4)
    pad = torch.tensor([[True, False, False, False]] * 2)
    mask = combine_masks(4, 4, causal=True, padding_mask=pad)
    for fn in (sdpa_attention, reference_attention):
        assert torch.isfinite(fn(q, k, v, attn_mask=mask)).all()
    with pytest.raises(ValueError, match="padding_mask"):
        combine_masks(4, 4, padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        combine_masks(4, 4, attn_mask=torch.zeros(4, 4))


def pair(dim=16, heads=4, **kw):
    torch.manual_seed(0)
    a = MultiHeadSelfAttention(dim, heads, backend="sdpa", **kw)
    b = MultiHeadSelfAttention(dim, heads, backend="reference", **kw)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("causal", [False, True])
def test_module_backends_agree_on_outputs_and_parameter_gradients(causal):
    a, b = pair(causal=causal)
    x = torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, -2:] = True
    ya, yb = a(x, pad), b(x, pad)
    torch.testing.assert_close(ya, yb, **FP32)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert pa.grad is not None and pa.grad.abs().sum() > 0, name
        torch.testing.assert_close(pa.grad, pb.grad, **FP32_GRAD)


def test_module_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiHeadSelfAttention(16, 4)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.proj.weight)
        theirs.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(3, 6, 16)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[2, 4:] = True
    expected, _ = theirs(x, x, x, key_padding_mask=pad, need_weights=False)
    torch.testing.assert_close(ours(x, pad), expected, **FP32)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_causal_attention_ignores_the_future(backend):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 2, causal=True, backend=backend)
    x = torch.randn(2, 9, 16)
    y = x.clone()
    y[:, 5:] = torch.randn(2, 4, 16)
    a, b = attn(x), attn(y)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_padding_keys_are_ignored():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 2)
    x = torch.randn(2, 8, 16)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[:, 6:] = True
    y = x.clone()
    y[:, 6:] = 100 * torch.randn(2, 2, 16)
    torch.testing.assert_close(attn(x, pad)[:, :6], attn(y, pad)[:, :6], **FP32)
    # and without the mask they matter
    assert not torch.allclose(attn(x)[:, :6], attn(y)[:, :6])


@pytest.mark.parametrize("rotary", [False, True])
def test_kv_cache_step_by_step_equals_full_causal_pass(rotary):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, causal=True,
                                  rotary=RotaryEmbedding(4) if rotary else None).eval()
    x = torch.randn(2, 10, 16)
    full = attn(x)
    cache = KVCache()
    parts = [attn(x[:, :4], cache=cache)]  # prefill 4 steps, then 1 at a time
    parts += [attn(x[:, t:t + 1], cache=cache) for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(parts, 1), full, **FP32)
    assert cache.length == 10 and cache.k.shape == (2, 4, 10, 4)
    cache.reset()
    assert cache.length == 0


def test_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 2, dropout=0.5)
    x = torch.randn(2, 6, 16)
    attn.train()
    assert not torch.allclose(attn(x), attn(x))
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x), rtol=0, atol=0)


def test_bad_arguments_raise_with_a_sentence():
    with pytest.raises(ValueError, match="must divide"):
        MultiHeadSelfAttention(10, 3)
    with pytest.raises(ValueError, match="Unknown attention backend"):
        MultiHeadSelfAttention(8, 2, backend="flash")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MultiHeadSelfAttention(8, 2, dropout=1.0)
    with pytest.raises(ValueError, match="Expected input"):
        MultiHeadSelfAttention(8, 2)(torch.randn(2, 3, 9))


# --- CUDA (skipped without a GPU) ----------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_TOL = {torch.float32: dict(atol=1e-3, rtol=1e-3),  # TF32 may be on for the reference matmul
           torch.bfloat16: BF16, torch.float16: dict(atol=5e-3, rtol=5e-3)}


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["none", "causal", "padding+causal"])
def test_gpu_sdpa_matches_reference(dtype, kind):
    kw = masks(n=64, s=64)[kind]
    kw = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in kw.items()}
    q1, k1, v1 = (t.detach().cuda().requires_grad_() for t in qkv(n=64, e=64, dtype=dtype))
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q1, k1, v1))
    fast, ref = sdpa_attention(q1, k1, v1, **kw), reference_attention(q2, k2, v2, **kw)
    torch.testing.assert_close(fast.float(), ref.float(), **GPU_TOL[dtype])
    w = torch.randn_like(ref)
    (fast * w).sum().backward()
    (ref * w).sum().backward()
    for a, b in ((q1, q2), (k1, k2), (v1, v2)):
        torch.testing.assert_close(a.grad.float(), b.grad.float(), **GPU_TOL[dtype])


@pytest.mark.gpu
@cuda
def test_gpu_flash_attention_kernel_serves_causal_bf16():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (t.detach().cuda() for t in qkv(n=256, e=64, dtype=torch.bfloat16))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # raises if FlashAttention cannot run it
        out = sdpa_attention(q, k, v, causal=True)
    torch.testing.assert_close(out.float(), reference_attention(q, k, v, causal=True).float(),
                               **BF16)
