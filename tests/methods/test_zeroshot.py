"""Zero-shot learning: attributes, the offline MiniLM encoder, compatibility model, metrics."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from dltricks.methods.zeroshot import (
    DIGIT_ATTRIBUTES,
    DIGIT_DESCRIPTIONS,
    CompatibilityModel,
    class_embeddings,
    digit_attribute_matrix,
    encode_texts,
    minilm_path,
    per_class_accuracy,
    predict,
    train_compatibility,
    zero_shot_metrics,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_digit_attributes_are_documented_and_tell_every_digit_apart():
    m = digit_attribute_matrix()
    assert m.shape == (10, len(DIGIT_ATTRIBUTES))
    assert len({tuple(r.tolist()) for r in m}) == 10  # distinct signatures
    names = list(DIGIT_ATTRIBUTES)
    assert m[8, names.index("two_loops")] == 1 and m[1, names.index("closed_loop")] == 0
    assert all(DIGIT_ATTRIBUTES[n] for n in names)
    assert len(DIGIT_DESCRIPTIONS) == 10


def test_minilm_encodes_offline_with_meaningful_similarity():
    e = encode_texts(["a small dog runs in the park", "a little puppy plays on the grass",
                      "the tax law was changed by parliament"])
    assert e.shape == (3, 384)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3
    with pytest.raises(ValueError, match="non-empty"):
        encode_texts([])


def test_minilm_pooling_matches_sentence_transformers_reference():
    st = pytest.importorskip("sentence_transformers")
    texts = list(DIGIT_DESCRIPTIONS[:3])
    ref = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(encode_texts(texts), ref.cpu(), atol=1e-4, rtol=1e-4)


def test_class_embeddings_are_centred_and_normalised():
    a = class_embeddings("attributes")
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(10))
    raw = digit_attribute_matrix()
    centred = raw - raw.mean(0)
    torch.testing.assert_close(a, centred / centred.norm(dim=-1, keepdim=True))
    with pytest.raises(ValueError, match="kind"):
        class_embeddings("wordnet")


class _Oracle(nn.Module):
    """x is the class id (as a float); returns the class's embedding: a perfect encoder."""

    def __init__(self, emb: torch.Tensor) -> None:
        super().__init__()
        self.emb = emb
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.emb[x.long().flatten()] + 0 * self.dummy


def test_perfect_encoder_scores_one_and_harmonic_mean_formula():
    emb = torch.eye(5)
    model = CompatibilityModel(_Oracle(emb), 5, 5)
    with torch.no_grad():
        model.proj.weight.copy_(torch.eye(5))
        model.proj.bias.zero_()
    y = torch.arange(5).repeat(4)
    m = zero_shot_metrics(model, y.float()[:, None], y, emb, seen=[0, 1, 2], unseen=[3, 4])
    assert m == {"zsl_acc": 1.0, "gzsl_seen": 1.0, "gzsl_unseen": 1.0, "gzsl_h": 1.0}
    # a huge seen penalty makes every prediction unseen: seen accuracy 0, H 0
    m = zero_shot_metrics(model, y.float()[:, None], y, emb, [0, 1, 2], [3, 4],
                          seen_penalty=100.0)
    assert m["gzsl_seen"] == 0.0 and m["gzsl_h"] == 0.0 and m["gzsl_unseen"] == 1.0


def test_predict_uses_eval_mode_and_restores_the_training_flag():
    torch.manual_seed(0)
    model = CompatibilityModel(nn.Sequential(nn.Flatten(1), nn.Dropout(0.9)), 5, 5)
    model.train()
    x = torch.randn(16, 5)
    emb = torch.randn(5, 5)
    first = predict(model, x, emb, range(5))
    torch.testing.assert_close(predict(model, x, emb, range(5)), first)  # no dropout noise
    assert all(m.training for m in model.modules())


def test_per_class_accuracy_averages_classes_not_samples():
    y = torch.tensor([0, 0, 0, 1])
    pred = torch.tensor([0, 0, 0, 0])
    assert per_class_accuracy(pred, y, [0, 1]) == 0.5  # sample accuracy would be 0.75


def test_training_never_sees_unseen_classes():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(6, 4, generator=g)
    emb[4:] = float("nan")  # unseen rows: any use of them would poison the loss
    y = torch.arange(6).repeat_interleave(10)
    x = torch.randn(60, 3, generator=g) + y[:, None].float()
    torch.manual_seed(0)
    model = CompatibilityModel(nn.Linear(3, 8), 8, 4)
    losses = train_compatibility(model, x, y, emb, seen=[0, 1, 2, 3], steps=20)
    assert all(torch.isfinite(torch.tensor(losses)))
    with pytest.raises(ValueError, match="two seen"):
        train_compatibility(model, x, y, emb, seen=[0], steps=1)


def test_attribute_zero_shot_beats_chance_on_synthetic_attribute_data():
    # images are noisy views of their class's attribute vector: attributes must transfer
    attrs = digit_attribute_matrix()
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(attrs.shape[1], 20, generator=g)
    y = torch.arange(10).repeat_interleave(30)
    x = attrs[y] @ mix + 0.3 * torch.randn(len(y), 20, generator=g)
    emb = class_embeddings("attributes")
    torch.manual_seed(0)
    model = CompatibilityModel(nn.Linear(20, 32), 32, emb.shape[1])
    seen, unseen = [0, 1, 2, 3, 4, 5, 6], [7, 8, 9]
    train_compatibility(model, x, y, emb, seen, steps=150, lr=3e-3)
    acc = zero_shot_metrics(model, x, y, emb, seen, unseen)["zsl_acc"]
    assert acc > 0.6  # chance is 1/3
    pred = predict(model, x[y >= 7], emb, unseen)
    assert set(pred.tolist()) <= set(unseen)
