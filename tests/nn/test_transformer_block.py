"""Tests for Transformer blocks: pre-/post-LN, dropout, stochastic depth, sub-layers by name,
KV caching through a stack, bf16 autocast and torch.compile."""

import shutil
import time

import pytest
import torch
from torch import nn

from dltricks.nn.attention import KVCache, MultiHeadSelfAttention
from dltricks.nn.drop import DropPath
from dltricks.nn.efficient_attention import (
    AxialSelfAttention,
    LinformerSelfAttention,
    LocalSelfAttention,
    LongformerSelfAttention,
)
from dltricks.nn.transformer import (
    ATTENTIONS,
    FeedForward,
    TransformerBlock,
    TransformerEncoder,
    get_attention,
    get_token_norm,
)

FP32 = dict(atol=1e-5, rtol=1e-4)


def zero_branches(block):
    with torch.no_grad():
        for lin in (block.attn.proj, block.ffn.fc2):
            lin.weight.zero_()
            lin.bias.zero_()


def test_pre_ln_block_with_silent_branches_is_the_identity():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4)
    zero_branches(block)
    x = torch.randn(2, 5, 16) * 3 + 1
    torch.testing.assert_close(block(x), x)


def test_post_ln_block_normalises_its_output():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, norm_first=False)
    x = torch.randn(2, 5, 16) * 3 + 1
    y = block(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)
    # with silent branches post-LN is LayerNorm(LayerNorm(x)), not the identity
    zero_branches(block)
    torch.testing.assert_close(block(x), nn.functional.layer_norm(x, (16,)), **FP32)


def test_pre_ln_encoder_ends_with_a_norm_post_ln_does_not():
    assert isinstance(TransformerEncoder(8, 2, 2).norm, nn.LayerNorm)
    assert isinstance(TransformerEncoder(8, 2, 2, norm_first=False).norm, nn.Identity)
    assert isinstance(TransformerEncoder(8, 2, 2, norm="rms").norm, nn.RMSNorm)


@pytest.mark.parametrize("attention,attn_kwargs", [
    ("sdpa", {}), ("reference", {}), ("local", {"window": 2}), ("longformer", {"window": 2}),
    ("axial", {"grid_size": (3, 3)}), ("linformer", {"seq_len": 9, "k": 4}),
])
def test_gradients_reach_every_parameter(attention, attn_kwargs):
    torch.manual_seed(0)
    enc = TransformerEncoder(16, 2, 4, rotary=True, dropout=0.1, drop_path=0.1,
                             attention=attention, attn_kwargs=attn_kwargs)
    enc(torch.randn(3, 9, 16)).square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropout_and_drop_path_act_only_in_training():
    torch.manual_seed(0)
    enc = TransformerEncoder(16, 3, 4, dropout=0.2, attn_dropout=0.2, drop_path=0.4)
    assert [b.drop_path.p for b in enc.blocks] == pytest.approx([0.0, 0.2, 0.4])
    assert isinstance(enc.blocks[0].drop_path, DropPath)
    assert enc.blocks[0].attn.dropout == 0.2 and enc.blocks[0].ffn.drop1.p == 0.2
    x = torch.randn(4, 6, 16)
    enc.train()
    assert not torch.allclose(enc(x), enc(x))
    enc.eval()
    torch.testing.assert_close(enc(x), enc(x), rtol=0, atol=0)


def test_drop_path_drops_whole_branches_per_sample():
    torch.manual_seed(0)
    block = TransformerBlock(8, 2, drop_path=0.5).train()
    x = torch.randn(64, 4, 8)
    y = block(x)
    ffn_only = x + 2 * block.ffn(block.norm2(x))  # attention dropped, FFN kept (scaled 1 / 0.5)
    both_dropped = (y - x).flatten(1).abs().amax(1) < 1e-6
    match_ffn_only = (y - ffn_only).flatten(1).abs().amax(1) < 1e-5
    assert 5 < int(both_dropped.sum()) < 30  # about a quarter of 64
    assert 5 < int(match_ffn_only.sum()) < 30


def test_norms_and_activations_by_name():
    assert isinstance(get_token_norm("layer", 8), nn.LayerNorm)
    assert isinstance(get_token_norm("rms", 8), nn.RMSNorm)
    assert isinstance(get_token_norm("none", 8), nn.Identity)
    assert isinstance(get_token_norm(nn.LayerNorm, 8), nn.LayerNorm)
    assert get_token_norm((nn.LayerNorm, {"eps": 1e-3}), 8).eps == 1e-3
    with pytest.raises(ValueError, match="Unknown token norm 'batch'"):
        get_token_norm("batch", 8)
    block = TransformerBlock(8, 2, act="relu", norm="rms")
    assert isinstance(block.ffn.act, nn.ReLU) and isinstance(block.norm1, nn.RMSNorm)
    assert FeedForward(8, 32).fc1.out_features == 32
    assert TransformerBlock(8, 2, mlp_ratio=2.0).ffn.fc1.out_features == 16


def test_attention_by_name():
    expected = {"sdpa": MultiHeadSelfAttention, "dense": MultiHeadSelfAttention,
                "reference": MultiHeadSelfAttention, "local": LocalSelfAttention,
                "longformer": LongformerSelfAttention, "axial": AxialSelfAttention,
                "linformer": LinformerSelfAttention}
    assert set(expected) == set(ATTENTIONS)
    x = torch.randn(2, 16, 8)
    for name, cls in expected.items():
        block = TransformerBlock(8, 2, attention=name)
        assert type(block.attn) is cls
        assert block(x).shape == x.shape
    assert get_attention("reference", 8, 2).backend == "reference"
    assert get_attention(LocalSelfAttention, 8, 2, window=3).window == 3
    with pytest.raises(ValueError, match=r"Unknown attention 'flash'.*allowed: sdpa"):
        get_attention("flash", 8, 2)
    with pytest.raises(ValueError, match="does not accept"):
        get_attention("sdpa", 8, 2, window=4)


@pytest.mark.parametrize("attention", ["sdpa", "reference", "local", "longformer"])
def test_causal_blocks_ignore_the_future(attention):
    torch.manual_seed(0)
    kw = {"window": 3} if attention in ("local", "longformer") else {}
    enc = TransformerEncoder(16, 2, 4, attention=attention, causal=True, attn_kwargs=kw,
                             rotary=True).eval()
    x = torch.randn(2, 12, 16)
    y = x.clone()
    y[:, 8:] = torch.randn(2, 4, 16)
    a, b = enc(x), enc(y)
    torch.testing.assert_close(a[:, :8], b[:, :8], rtol=0, atol=1e-5)
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_kv_cache_through_the_stack_equals_full_pass():
    torch.manual_seed(0)
    enc = TransformerEncoder(16, 3, 4, causal=True, rotary=True).eval()
    x = torch.randn(2, 9, 16)
    caches = [KVCache() for _ in range(3)]
    steps = [enc(x[:, :3], caches=caches)] + [enc(x[:, t:t + 1], caches=caches)
                                              for t in range(3, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), enc(x), **FP32)
    with pytest.raises(ValueError, match="one KV cache per block"):
        enc(x, caches=caches[:2])


def _linear_dtypes(model: nn.Module) -> tuple[set, list]:
    """Output dtypes of every Linear in ``model`` during the next forwards (and the hooks)."""
    seen: set = set()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
             for m in model.modules() if isinstance(m, nn.Linear)]
    return seen, hooks


def test_bf16_autocast_stays_close_to_fp32():
    """Autocast really runs the projections in bf16 (a no-op autocast fails: the Linear outputs
    would be float32 and the result identical to fp32), and the result stays within bf16
    rounding of fp32 (8-bit mantissa: ~4e-3 per rounding, a few roundings deep)."""
    torch.manual_seed(0)
    enc = TransformerEncoder(32, 2, 4, causal=True, rotary=True).eval()
    x = torch.randn(2, 16, 32)
    seen, hooks = _linear_dtypes(enc)
    with torch.no_grad():
        ref = enc(x)
        assert seen == {torch.float32}
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = enc(x)
    for h in hooks:
        h.remove()
    assert seen == {torch.bfloat16}
    assert (low.float() - ref).abs().max() > 1e-4  # bf16 rounding shows: autocast did act
    torch.testing.assert_close(low.float(), ref, atol=3e-2, rtol=3e-2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, causal=True).eval()
    x = torch.randn(2, 8, 16)
    t0 = time.perf_counter()
    compiled = torch.compile(block)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), block(x), atol=1e-5, rtol=1e-4)
    assert time.perf_counter() - t0 < 300


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_compile_and_bf16_autocast():
    torch.manual_seed(0)
    block = TransformerBlock(64, 4, causal=True).cuda().eval()
    x = torch.randn(2, 128, 64, device="cuda")
    with torch.no_grad():
        ref = block(x)
        torch.testing.assert_close(torch.compile(block)(x), ref, atol=1e-3, rtol=1e-3)
        seen, hooks = _linear_dtypes(block)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = block(x)
        for h in hooks:
            h.remove()
    assert seen == {torch.bfloat16}  # a no-op autocast would leave float32 projections
    assert (low.float() - ref).abs().max() > 1e-4
    torch.testing.assert_close(low.float(), ref, atol=3e-2, rtol=3e-2)
