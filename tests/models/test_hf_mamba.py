"""Hugging Face / mamba_ssm checkpoint interop: load both layouts, refuse what would give wrong
logits, export a folder transformers loads with equal logits (no download: HF_HUB_OFFLINE)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from dltricks.models import create_model
from dltricks.models.hf_mamba import export_hf_mamba, hf_mamba_config, load_hf_mamba
from dltricks.models.mamba import MambaLM

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _hf_model(**kw):
    transformers = pytest.importorskip("transformers")
    cfg = dict(vocab_size=50, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
               conv_kernel=4)
    cfg.update(kw)
    torch.manual_seed(0)
    return transformers.MambaForCausalLM(transformers.MambaConfig(**cfg)).eval()


def test_loader_and_exporter_are_exported_from_dltricks_models():
    from dltricks.models import export_hf_mamba as exp_again
    from dltricks.models import load_hf_mamba as again

    assert again is load_hf_mamba and exp_again.__module__ == "dltricks.models.hf_mamba"


@pytest.mark.parametrize("kw", [{}, {"use_bias": True, "tie_word_embeddings": False,
                                     "time_step_rank": 3, "layer_norm_epsilon": 1e-6}])
def test_loads_a_hugging_face_checkpoint(tmp_path, kw):
    hf = _hf_model(**kw)
    hf.save_pretrained(tmp_path)
    ours = load_hf_mamba(tmp_path).eval()
    tokens = torch.randint(0, 50, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_other_hidden_act_is_refused(tmp_path, act):
    hf = _hf_model(hidden_act=act)
    hf.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"hidden_act '{act}' is not supported.*wrong logits"):
        load_hf_mamba(tmp_path)


def test_mamba2_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "mamba2", "hidden_size": 8, "vocab_size": 5, "num_hidden_layers": 1}))
    with pytest.raises(ValueError, match="model_type 'mamba2'"):
        load_hf_mamba(tmp_path)


def _ssm_layout(tmp_path, hf, vocab_size, **extra):
    """Writes ``hf``'s weights as the original state-spaces repository does."""
    state = {k.replace("backbone.embeddings.", "backbone.embedding."): v
             for k, v in hf.state_dict().items()}  # lm_head.weight included, tied
    torch.save(state, tmp_path / "pytorch_model.bin")
    c = hf.config
    cfg = {"d_model": c.hidden_size, "n_layer": c.num_hidden_layers, "vocab_size": vocab_size,
           "ssm_cfg": {"d_state": c.state_size}, "rms_norm": True, "residual_in_fp32": True,
           "fused_add_norm": True, "pad_vocab_size_multiple": 8, **extra}
    (tmp_path / "config.json").write_text(json.dumps(cfg))


def test_loads_the_original_state_spaces_layout(tmp_path):
    # vocab 50 padded to 56, as mamba_ssm stores the embedding (pad_vocab_size_multiple=8)
    hf = _hf_model(vocab_size=56)
    _ssm_layout(tmp_path, hf, vocab_size=50)
    ours = load_hf_mamba(tmp_path).eval()
    assert ours.lm_head.weight.shape[0] == 56
    assert ours.lm_head.weight is ours.backbone.embeddings.weight
    tokens = torch.randint(0, 50, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hf(tokens).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra, words", [
    ({"ssm_cfg": {"layer": "Mamba2"}}, "Mamba2"),
    ({"rms_norm": False}, "LayerNorm"),
    ({"attn_layer_idx": [1]}, "attn_layer_idx"),
])
def test_state_spaces_layouts_we_cannot_compute_are_refused(tmp_path, extra, words):
    hf = _hf_model(vocab_size=56)
    _ssm_layout(tmp_path, hf, vocab_size=50, **extra)
    with pytest.raises(ValueError, match=words):
        load_hf_mamba(tmp_path)


def test_unsafe_pickle_is_refused(tmp_path):
    hf = _hf_model(vocab_size=56)
    _ssm_layout(tmp_path, hf, vocab_size=50)
    torch.save({"backbone.norm_f.weight": object()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="weights_only"):
        load_hf_mamba(tmp_path)


def test_hf_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_hf_mamba(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 8, "vocab_size": 5, '
                                          '"num_hidden_layers": 1}')
    with pytest.raises(FileNotFoundError, match=r"No model\.safetensors"):
        load_hf_mamba(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ValueError, match="no 'vocab_size'"):
        load_hf_mamba(tmp_path)


@pytest.mark.parametrize("kw", [
    dict(vocab_size=50, dim=32, n_layers=2, d_state=8),
    dict(vocab_size=37, dim=24, n_layers=3, d_state=4, d_conv=3, expand=3, dt_rank=5,
         tie_embeddings=False, bias=True, conv_bias=False),
])
def test_export_loads_in_transformers_with_equal_logits(tmp_path, kw):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    ours = MambaLM(**kw).eval()
    with torch.no_grad():  # move off the init so that a mix-up of parameters would show
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    export_hf_mamba(ours, tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json",
                                                                 "model.safetensors"]
    hf = transformers.MambaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tokens = torch.randint(0, kw["vocab_size"], (2, 19))
    with torch.no_grad():
        want = ours(tokens)
        torch.testing.assert_close(hf(tokens).logits, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(load_hf_mamba(tmp_path / "hf").eval()(tokens), want)
    # greedy generation agrees too
    prompt = tokens[:1, :5]
    ref = hf.generate(prompt, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours.generate(prompt, max_new_tokens=6), ref)


def test_export_refuses_a_hybrid_and_a_classifier(tmp_path):
    hybrid = create_model("mamba_hybrid_lm", vocab_size=20, dim=16, n_layers=2, attn_every=1)
    with pytest.raises(ValueError, match="attention layers"):
        export_hf_mamba(hybrid, tmp_path / "x")
    clf = create_model("mamba_classifier", in_channels=1, num_classes=3, dim=16)
    with pytest.raises(ValueError, match="Only a MambaLM"):
        hf_mamba_config(clf)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        export_hf_mamba(create_model("mamba_lm", vocab_size=20, dim=16), tmp_path / "file")
