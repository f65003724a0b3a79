"""Tests for the Transformer models: registry examples, causality, cached generation, padding,
ViT and hybrid shapes, attention/position options, bf16 autocast."""

import pytest
import torch

import dltricks.models.transformer as tm  # registers the models before any wiring
from dltricks.models.registry import MODELS, create_model
from dltricks.nn.efficient_attention import AxialSelfAttention

NAMES = ["transformer_classifier", "transformer_tagger", "transformer_lm", "vit_tiny",
         "hybrid_cnn_transformer"]


@pytest.mark.parametrize("name", NAMES)
def test_registry_example_builds_runs_and_backprops(name):
    meta = MODELS.meta(name)
    ex = meta["example"]
    assert meta["task"] in ("classification", "sequence") and meta["description"]
    torch.manual_seed(0)
    model = create_model(name, **ex["kwargs"]).train()
    x = (torch.randint(0, ex["high"], ex["input"]) if ex["dtype"] == "long"
         else torch.randn(ex["input"]))
    out = model(x)
    assert tuple(out.shape) == tuple(ex["output"])
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {pname}"


# --- language model ------------------------------------------------------------------------------


def small_lm(**kw):
    torch.manual_seed(0)
    return create_model("transformer_lm", vocab_size=17, dim=32, depth=2, num_heads=4,
                        **kw).eval()


@pytest.mark.parametrize("position", ["rope", "sinusoidal", "learned", "none"])
def test_cached_and_uncached_generation_give_identical_tokens(position):
    lm = small_lm(position=position)
    prompt = torch.randint(0, 17, (3, 4), generator=torch.Generator().manual_seed(1))
    greedy = lm.generate(prompt, 12)
    assert torch.equal(greedy, lm.generate(prompt, 12, use_cache=False))
    assert torch.equal(greedy[:, :4], prompt) and greedy.shape == (3, 16)
    sampled = [lm.generate(prompt, 12, temperature=1.3, top_k=5, use_cache=c,
                           generator=torch.Generator().manual_seed(7)) for c in (True, False)]
    assert torch.equal(*sampled)


def test_cached_logits_equal_full_forward():
    lm = small_lm()
    tokens = torch.randint(0, 17, (2, 10))
    caches = lm.new_caches()
    steps = [lm(tokens[:, :6], caches)] + [lm(tokens[:, t:t + 1], caches) for t in range(6, 10)]
    torch.testing.assert_close(torch.cat(steps, 1), lm(tokens), atol=1e-5, rtol=1e-4)


def test_greedy_is_argmax_and_top_k_one_is_greedy():
    lm = small_lm()
    prompt = torch.randint(0, 17, (2, 3))
    out = lm.generate(prompt, 1)
    assert torch.equal(out[:, -1], lm(prompt)[:, -1].argmax(-1))
    assert torch.equal(lm.generate(prompt, 6), lm.generate(prompt, 6, temperature=0.7, top_k=1))


def test_top_k_sampling_stays_in_the_top_k():
    lm = small_lm()
    prompt = torch.randint(0, 17, (64, 3))
    out = lm.generate(prompt, 1, temperature=2.0, top_k=3,
                      generator=torch.Generator().manual_seed(0))
    top3 = lm(prompt)[:, -1].topk(3, dim=-1).indices
    assert (top3 == out[:, -1:]).any(-1).all()
    assert out[:, -1].unique().numel() > 3  # it does sample (64 prompts, 3 choices each)


def test_lm_is_causal_and_ties_embeddings():
    lm = small_lm()
    x = torch.randint(0, 17, (2, 10))
    y = x.clone()
    y[:, 7] = (x[:, 7] + 1) % 17
    torch.testing.assert_close(lm(x)[:, :7], lm(y)[:, :7], rtol=0, atol=1e-5)
    assert not torch.allclose(lm(x)[:, 7:], lm(y)[:, 7:])
    assert lm.lm_head.weight is lm.embed.weight


def test_generate_arguments_and_cacheless_attention():
    lm = small_lm(attention="local", attn_kwargs={"window": 4})
    prompt = torch.randint(0, 17, (2, 3))
    assert not lm.supports_cache
    assert lm.generate(prompt, 5).shape == (2, 8)  # falls back to re-encoding
    with pytest.raises(ValueError, match="no KV cache"):
        lm.generate(prompt, 5, use_cache=True)
    with pytest.raises(ValueError, match="prompt"):
        lm.generate(torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="top_k"):
        lm.generate(prompt, 2, temperature=1.0, top_k=0)


# --- tagger and classifier -------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_tagger_causal_option(causal):
    torch.manual_seed(0)
    model = create_model("transformer_tagger", vocab_size=11, num_classes=4, dim=16,
                         num_heads=2, causal=causal).eval()
    x = torch.randint(0, 11, (2, 10))
    y = x.clone()
    y[:, 6] = (x[:, 6] + 1) % 11
    a, b = model(x), model(y)
    assert a.shape == (2, 10, 4)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5) is causal


def test_tagger_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    kw = dict(vocab_size=11, num_classes=4, dim=16, num_heads=2)
    x = torch.randint(0, 11, (2, 9))
    perm = torch.randperm(9)
    plain = create_model("transformer_tagger", position="none", **kw).eval()
    torch.testing.assert_close(plain(x[:, perm]), plain(x)[:, perm], atol=1e-5, rtol=1e-4)
    with_pos = create_model("transformer_tagger", position="sinusoidal", **kw).eval()
    assert not torch.allclose(with_pos(x[:, perm]), with_pos(x)[:, perm], atol=1e-3)



def test_tagger_learned_position_init_std():
    torch.manual_seed(0)
    kw = dict(vocab_size=11, num_classes=4, dim=64, num_heads=2, position="learned", max_len=256)
    default = create_model("transformer_tagger", **kw).trunk.pos.weight
    scaled = create_model("transformer_tagger", pos_init_std=1.0, **kw).trunk.pos.weight
    assert default.std().item() == pytest.approx(0.02, rel=0.05)
    assert scaled.std().item() == pytest.approx(1.0, rel=0.05)
    assert scaled.shape == (256, 64)
    with pytest.raises(ValueError, match="pos_init_std"):
        create_model("transformer_tagger", pos_init_std=0.0, **kw)

@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_classifier_ignores_padding_tokens(pool):
    torch.manual_seed(0)
    model = create_model("transformer_classifier", vocab_size=12, num_classes=3, dim=16,
                         num_heads=2, pool=pool, pad_id=0).eval()
    x = torch.randint(1, 12, (2, 7))
    padded = torch.cat([x, torch.zeros(2, 5, dtype=torch.long)], 1)
    torch.testing.assert_close(model(padded), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("embed", ["linear", "conv"])
def test_classifier_signal_patches(embed):
    torch.manual_seed(0)
    model = create_model("transformer_classifier", in_channels=2, num_classes=10, dim=16,
                         num_heads=2, patch_size=4, embed=embed, pool="mean")
    tokens, _ = model.embed(torch.randn(3, 2, 38))  # padded to 40: 10 patches
    assert tokens.shape == (3, 10, 16)
    assert model(torch.randn(3, 2, 40)).shape == (3, 10)
    with pytest.raises(ValueError, match="vocab_size"):
        model(torch.randint(0, 3, (3, 5)))
    with pytest.raises(ValueError, match="in_channels"):
        create_model("transformer_classifier", num_classes=3)


@pytest.mark.parametrize("attention,attn_kwargs", [
    ("sdpa", {}), ("reference", {}), ("local", {"window": 2}),
    ("longformer", {"window": 2, "global_tokens": 1}), ("linformer", {"seq_len": 11, "k": 4}),
])
@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope", "none"])
def test_classifier_every_attention_and_position(attention, attn_kwargs, position):
    torch.manual_seed(0)
    model = create_model("transformer_classifier", in_channels=1, num_classes=5, dim=16,
                         depth=1, num_heads=2, attention=attention, attn_kwargs=attn_kwargs,
                         position=position, max_len=11)
    x = torch.randn(3, 1, 40, requires_grad=True)
    out = model(x)
    assert out.shape == (3, 5)  # 10 patches + CLS
    # gradients reach the input and every parameter
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        full = model(x)
        # samples never mix: each one alone gives its row of the batch
        alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
        assert torch.allclose(full, alone, atol=1e-5)
        if attention in ("sdpa", "reference"):  # global attention is permutation-equivariant
            perm = torch.tensor([3, 7, 0, 9, 1, 5, 2, 8, 6, 4])
            shuffled = model(x.view(3, 1, 10, 4)[:, :, perm].reshape(3, 1, 40))
            if position == "none":  # the CLS token cannot tell the patches' order
                assert torch.allclose(shuffled, full, atol=1e-5)
            else:  # positions make the order matter
                assert not torch.allclose(shuffled, full, atol=1e-4)


# --- ViT and hybrid ------------------------------------------------------------------------------


@pytest.mark.parametrize("patch_size,tokens", [(2, 16), (4, 4)])
def test_vit_tiny_on_digits(patch_size, tokens):
    model = create_model("vit_tiny", in_channels=1, num_classes=10, patch_size=patch_size,
                         dim=16, depth=1, num_heads=2)
    assert model.grid == (8 // patch_size,) * 2
    assert model.trunk.pos.weight.shape == (tokens + 1, 16)  # + CLS
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="Expected images"):
        model(torch.randn(2, 1, 9, 9))
    with pytest.raises(ValueError, match="must divide"):
        create_model("vit_tiny", in_channels=1, num_classes=10, patch_size=3)


def test_vit_axial_attention_gets_the_patch_grid():
    with pytest.raises(ValueError, match="pool='mean'"):
        create_model("vit_tiny", in_channels=1, num_classes=10, attention="axial")
    model = create_model("vit_tiny", in_channels=1, num_classes=10, attention="axial",
                         pool="mean", dim=16, depth=1, num_heads=2)
    attn = model.trunk.encoder.blocks[0].attn
    assert isinstance(attn, AxialSelfAttention) and attn.grid_size == (4, 4)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("spatial_dims,shape,tokens", [(2, (1, 8, 8), 16), (1, (1, 40), 20)])
def test_hybrid_cnn_transformer(spatial_dims, shape, tokens):
    torch.manual_seed(0)
    model = create_model("hybrid_cnn_transformer", in_channels=1, num_classes=10,
                         spatial_dims=spatial_dims, channels=[8, 16], dim=16, num_heads=2)
    x = torch.randn(2, *shape)
    fmap = model.to_tokens(model.stem(x))
    assert fmap.flatten(2).shape[-1] == tokens
    assert model(x).shape == (2, 10)
    axial = create_model("hybrid_cnn_transformer", in_channels=1, num_classes=10,
                         channels=[8, 16], dim=16, num_heads=2, attention="axial")
    assert axial(torch.randn(2, 1, 8, 12)).shape == (2, 10)  # a 4 × 6 token grid
    with pytest.raises(ValueError, match="2-D"):
        create_model("hybrid_cnn_transformer", in_channels=1, num_classes=10, spatial_dims=1,
                     attention="axial")


def test_bf16_autocast_on_models():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    for name in ("vit_tiny", "hybrid_cnn_transformer"):
        model = create_model(name, in_channels=1, num_classes=10, dim=32, num_heads=4).eval()
        with torch.no_grad():
            ref = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x)
        torch.testing.assert_close(low.float(), ref, atol=0.15, rtol=0.1)


def test_tagger_learns_to_copy_the_previous_token():
    # Needs attention to the previous position: the label at t is the token at t - 1.
    torch.manual_seed(0)
    model = tm.TransformerTagger(8, 8, dim=32, depth=1, num_heads=2, causal=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        x = torch.randint(0, 8, (32, 10))
        y = torch.roll(x, 1, dims=1)
        loss = torch.nn.functional.cross_entropy(model(x)[:, 1:].reshape(-1, 8),
                                                 y[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randint(0, 8, (64, 10))
    acc = (model.eval()(x)[:, 1:].argmax(-1) == x[:, :-1]).float().mean()
    assert acc > 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_generation_and_autocast_training_step():
    lm = small_lm().cuda()
    prompt = torch.randint(0, 17, (4, 5), device="cuda")
    assert torch.equal(lm.generate(prompt, 16), lm.generate(prompt, 16, use_cache=False))
    for name in NAMES:
        ex = MODELS.meta(name)["example"]
        model = create_model(name, **ex["kwargs"]).cuda().train()
        x = (torch.randint(0, ex["high"], ex["input"]) if ex["dtype"] == "long"
             else torch.randn(ex["input"])).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        assert tuple(out.shape) == tuple(ex["output"])
        out.float().square().mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()), name
