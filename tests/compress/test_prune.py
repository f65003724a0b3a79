"""Magnitude pruning on Mamba and Transformer models: the requested sparsity exactly, the smallest
weights go, masks survive fine-tuning, permanence restores the plain parameters."""

import pytest
import torch
from torch import nn

from dltricks.compress import compressible_modules, magnitude_prune, make_permanent, sparsity
from dltricks.models import create_model


def _models():
    torch.manual_seed(0)
    return {
        "mamba": create_model("mamba_lm", vocab_size=20, dim=32, n_layers=2, d_state=4),
        "hybrid": create_model("mamba_hybrid_lm", vocab_size=20, dim=32, n_layers=2,
                               attn_every=1, num_heads=2, d_state=4),
        "transformer": create_model("transformer_lm", vocab_size=20, dim=32, depth=2,
                                    num_heads=2),
    }


def _weights(model):
    return [m.weight.detach().flatten() for _, m in compressible_modules(model)]


@pytest.mark.parametrize("name", ["mamba", "hybrid", "transformer"])
def test_global_pruning_zeroes_exactly_the_smallest_weights(name):
    model = _models()[name]
    before = torch.cat(_weights(model)).abs()
    names = magnitude_prune(model, 0.6, scope="global")
    assert names and not any(n.endswith("dt_proj") or n == "lm_head" for n in names)
    after = torch.cat(_weights(model))
    assert int((after == 0).sum()) == round(0.6 * after.numel())
    assert sparsity(model) == pytest.approx(0.6, abs=1 / after.numel())
    kept = after != 0
    assert before[~kept].max() <= before[kept].min()  # one global magnitude threshold


def test_layerwise_pruning_gives_every_layer_the_same_sparsity():
    model = _models()["mamba"]
    magnitude_prune(model, 0.3, scope="layer")
    for layer, s in sparsity(model, per_layer=True).items():
        n = dict(compressible_modules(model))[layer].weight.numel()
        assert s == pytest.approx(round(0.3 * n) / n), layer


def test_skipped_and_tied_weights_stay_dense():
    model = _models()["mamba"]
    names = {n for n, _ in compressible_modules(model)}
    assert "backbone.layers.0.mixer.dt_proj" not in names  # MambaBlock.compress_skip
    assert "lm_head" not in names  # tied to the embedding
    assert "backbone.layers.0.mixer.in_proj" in names
    magnitude_prune(model, 0.9)
    assert (model.backbone.layers[0].mixer.dt_proj.weight != 0).all()
    assert model.lm_head.weight is model.backbone.embeddings.weight
    excluded = {n for n, _ in compressible_modules(model, exclude=["*.out_proj"])}
    assert excluded == names - {"backbone.layers.0.mixer.out_proj",
                                "backbone.layers.1.mixer.out_proj"}


def test_masks_survive_fine_tuning_and_permanence_restores_plain_weights():
    model = _models()["transformer"]
    keys = set(model.state_dict())
    magnitude_prune(model, 0.5)
    assert any(k.endswith("weight_mask") for k in model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = torch.randint(0, 20, (4, 9))
    for _ in range(2):
        model(tokens).square().mean().backward()
        opt.step()
        opt.zero_grad()
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)
    with torch.no_grad():
        out = model(tokens)
    assert make_permanent(model) == 8  # qkv, proj, fc1, fc2 in two blocks
    assert set(model.state_dict()) == keys and make_permanent(model) == 0
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), out)


def test_bad_arguments():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="amount"):
        magnitude_prune(model, 1.5)
    with pytest.raises(ValueError, match="scope"):
        magnitude_prune(model, 0.5, scope="channel")
    with pytest.raises(ValueError, match="No layer"):
        magnitude_prune(nn.Sequential(nn.ReLU()), 0.5)
