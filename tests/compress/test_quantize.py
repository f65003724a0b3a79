"""Int8 dynamic quantization and the size / latency helpers, on Mamba and Transformer LMs."""

import time

import pytest
import torch
from torch import nn

from dltricks.compress import (
    compressed_state_dict_bytes,
    cpu_latency,
    magnitude_prune,
    quantization_engine,
    quantize_dynamic_int8,
    quantized_layer_count,
    sparsity,
    state_dict_bytes,
)
from dltricks.models import create_model


def _lm(name):
    torch.manual_seed(0)
    if name == "transformer":
        return create_model("transformer_lm", vocab_size=16, dim=64, depth=2).eval()
    kw = dict(attn_every=1) if name == "hybrid" else {}
    return create_model("mamba_lm", vocab_size=16, dim=64, n_layers=2, **kw).eval()


def _rel_err(a, b):
    return float((a - b).norm() / a.norm())


def test_engine_is_available_here():
    assert quantization_engine() in ("x86", "fbgemm", "qnnpack", "onednn")


# relative logit error measured at these seeds: 0.050 / 0.061 / 0.030 (the Transformer LM's
# tied embeddings start at std 0.02, so its logits are small and the relative error larger than
# with N(0, 1)); Mamba's scan output has
# outliers (absmax ≈ 30 std), which per-tensor int8 activations of out_proj resolve poorly
@pytest.mark.parametrize("name,n_quantized,tol", [("mamba", 7, 0.12), ("hybrid", 6, 0.12),
                                                   ("transformer", 9, 0.06)])
def test_quantized_outputs_stay_close_and_the_model_shrinks(name, n_quantized, tol):
    model = _lm(name)
    q = quantize_dynamic_int8(model)
    assert quantized_layer_count(q) == n_quantized and quantized_layer_count(model) == 0
    tokens = torch.randint(0, 16, (4, 24))
    with torch.no_grad():
        ref, out = model(tokens), q(tokens)
    assert _rel_err(ref, out) < tol
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.8
    assert state_dict_bytes(q) < 0.5 * state_dict_bytes(model)
    if name != "transformer":
        assert isinstance(q.backbone.layers[0].mixer.dt_proj, nn.Linear)  # compress_skip
        assert q.generate(tokens[:, :3], 4).shape == (4, 7)  # the recurrent step still runs


def test_keeping_mamba_out_proj_in_float_lowers_the_error():
    model = _lm("mamba")
    tokens = torch.randint(0, 16, (4, 24))
    with torch.no_grad():
        ref = model(tokens)
        err_all = _rel_err(ref, quantize_dynamic_int8(model)(tokens))
        err_kept = _rel_err(ref, quantize_dynamic_int8(model, exclude=["*.out_proj"])(tokens))
    assert err_kept < 0.75 * err_all  # measured 0.025 vs 0.050


def test_a_pruned_model_quantizes_and_keeps_its_zeros():
    model = _lm("transformer")
    magnitude_prune(model, 0.8)
    q = quantize_dynamic_int8(model)  # folds the masks into the copy
    assert any(k.endswith("weight_mask") for k in model.state_dict())  # original untouched
    w = q.trunk.encoder.blocks[0].ffn.fc1.weight()  # quantized weight (dequantize to check)
    assert float((w.dequantize() == 0).float().mean()) >= 0.5
    assert sparsity(model) == pytest.approx(0.8, abs=1e-3)


def test_state_dict_bytes_and_compression():
    lin = nn.Linear(100, 100)
    n = state_dict_bytes(lin)
    assert 4 * (100 * 100 + 100) < n < 4 * (100 * 100 + 100) + 4096  # float32 data + archive
    dense = compressed_state_dict_bytes(lin)
    magnitude_prune(lin, 0.9, permanent=True)
    assert abs(state_dict_bytes(lin) - n) < 256  # zeros in a dense tensor take the same room
    assert compressed_state_dict_bytes(lin) < 0.5 * dense
    with pytest.raises(ValueError, match="zlib level"):
        compressed_state_dict_bytes(lin, 10)


def test_cpu_latency_measures_wall_time():
    stats = cpu_latency(time.sleep, 0.002, warmup=1, repeats=3)
    assert stats["repeats"] == 3 and stats["min_s"] >= 0.002
    assert stats["min_s"] <= stats["median_s"] <= stats["q3_s"] + 1e-12
    with pytest.raises(ValueError, match="repeats"):
        cpu_latency(time.sleep, 0.0, repeats=0)
