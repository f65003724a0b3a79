"""Hybrid Mamba + attention stacks (Jamba layout): layer placement, causality, recurrent decoding
(conv + SSM state in Mamba layers, KV cache in attention layers) equal to the full forward."""

import pytest
import torch

from dltricks.models import create_model
from dltricks.models.mamba import AttentionLayer, MambaLayer, MambaLM, hybrid_attention_layers
from dltricks.nn.attention import KVCache
from dltricks.nn.ssm.mamba_block import MambaState


def test_attention_layer_placement_follows_jamba():
    assert hybrid_attention_layers(8, attn_every=7) == (4,)  # Jamba: period 8, offset 4
    assert hybrid_attention_layers(16, attn_every=7) == (4, 12)
    assert hybrid_attention_layers(4, attn_every=3) == (2,)
    assert hybrid_attention_layers(4, attn_every=1) == (1, 3)
    assert hybrid_attention_layers(4) == ()
    assert hybrid_attention_layers(5, attn_layers=[0, -1]) == (0, 4)
    with pytest.raises(ValueError, match="no attention layer"):
        hybrid_attention_layers(2, attn_every=7)
    with pytest.raises(ValueError, match="out of range"):
        hybrid_attention_layers(3, attn_layers=[3])
    with pytest.raises(ValueError, match="not both"):
        hybrid_attention_layers(4, attn_every=1, attn_layers=[1])


def test_hybrid_models_are_built_as_asked():
    lm = create_model("mamba_hybrid_lm", vocab_size=10, dim=16, n_layers=4, num_heads=2,
                      attn_mlp_ratio=2.0)
    kinds = [type(layer) for layer in lm.backbone.layers]
    assert kinds == [MambaLayer, MambaLayer, AttentionLayer, MambaLayer]
    attn = lm.backbone.layers[2]
    assert attn.mixer.causal and attn.mixer.rotary is None and attn.mlp.fc1.out_features == 32
    clf = create_model("mamba_classifier", in_channels=2, num_classes=3, dim=16, n_layers=2,
                       attn_layers=[1], num_heads=2, attn_position="rope")
    assert isinstance(clf.backbone.layers[1], AttentionLayer)
    assert not clf.backbone.layers[1].mixer.causal  # classifiers attend both ways by default
    assert clf.backbone.layers[1].mixer.rotary is not None
    # the plain model keeps Hugging Face's parameter names
    plain = create_model("mamba_lm", vocab_size=10, dim=16, n_layers=2)
    assert "backbone.layers.1.mixer.A_log" in plain.state_dict()
    with pytest.raises(ValueError, match="attention position"):
        create_model("mamba_hybrid_lm", vocab_size=10, dim=16, attn_position="sinusoidal")
    with pytest.raises(ValueError, match="divide"):
        create_model("mamba_hybrid_lm", vocab_size=10, dim=18, num_heads=4)


@pytest.mark.parametrize("position", ["none", "rope"])
def test_hybrid_lm_is_causal(position):
    torch.manual_seed(0)
    lm = MambaLM(12, dim=16, n_layers=2, d_state=4, attn_every=1, num_heads=2,
                 attn_position=position).eval()
    a = torch.randint(0, 12, (2, 10))
    b = a.clone()
    b[:, 6:] = (b[:, 6:] + 1) % 12
    torch.testing.assert_close(lm(a)[:, :6], lm(b)[:, :6])
    assert not torch.allclose(lm(a)[:, 6:], lm(b)[:, 6:])


@pytest.mark.parametrize("position,mlp", [("none", 0.0), ("rope", 2.0)])
def test_hybrid_recurrent_step_equals_full_forward(position, mlp):
    torch.manual_seed(0)
    lm = MambaLM(13, dim=16, n_layers=4, d_state=4, attn_every=1, num_heads=2,
                 attn_position=position, attn_mlp_ratio=mlp).eval()
    tokens = torch.randint(0, 13, (2, 11))
    full = lm(tokens)
    states = lm.init_state(2)
    assert [type(s) for s in states] == [MambaState, KVCache, MambaState, KVCache]
    steps = torch.stack([lm.step(tokens[:, t], states) for t in range(11)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)
    assert states[1].length == 11  # the attention layer cached every step


def test_hybrid_prefill_fills_the_kv_caches_and_decoding_continues_the_forward():
    torch.manual_seed(0)
    lm = MambaLM(13, dim=16, n_layers=4, d_state=4, attn_every=1, num_heads=2,
                 attn_position="rope").eval()
    tokens = torch.randint(0, 13, (2, 12))
    full = lm(tokens)
    with torch.no_grad():
        logits, states = lm.prefill(tokens[:, :7])
        assert [type(s) for s in states] == [MambaState, KVCache, MambaState, KVCache]
        assert states[1].length == 7
        rest = torch.stack([lm.step(tokens[:, t], states) for t in range(7, 12)], 1)
    torch.testing.assert_close(logits, full[:, :7], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rest, full[:, 7:], rtol=1e-4, atol=1e-5)


def test_hybrid_greedy_generation_continues_the_full_forward_argmax():
    torch.manual_seed(2)
    lm = create_model("mamba_hybrid_lm", vocab_size=9, dim=16, n_layers=2, attn_every=1,
                      num_heads=2, d_state=4, attn_position="rope").eval()
    prompt = torch.randint(0, 9, (2, 4))
    out = lm.generate(prompt, max_new_tokens=5)
    assert out.shape == (2, 9) and torch.equal(out[:, :4], prompt)
    with torch.no_grad():
        for t in range(4, 9):
            assert torch.equal(out[:, t], lm(out[:, :t])[:, -1].argmax(-1))


def test_classifier_attention_is_bidirectional_by_default():
    torch.manual_seed(0)
    clf = create_model("mamba_hybrid_classifier", in_channels=1, num_classes=4, dim=16,
                       n_layers=2, attn_every=1, num_heads=2, d_state=4).eval()
    layer = clf.backbone.layers[1]
    h = torch.randn(1, 12, 16)
    h2 = h.clone()
    h2[:, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(layer(h)[:, 0], layer(h2)[:, 0])  # position 0 sees the end
        assert clf(torch.randn(3, 1, 12)).shape == (3, 4)
