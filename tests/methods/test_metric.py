"""Episodic sampler, prototypical loss, Siamese/contrastive and triplet losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dltricks.data.base import ArrayDataset, DatasetSplits
from dltricks.methods.metric import (
    EpisodeSampler,
    SiameseNetwork,
    contrastive_loss,
    few_shot_accuracy,
    make_pairs,
    prototypes,
    prototypical_loss,
    select_classes,
    train_embedding,
    triplet_loss,
)


def _labelled(n_per_class: int = 20, classes: int = 8, dim: int = 6, seed: int = 0,
              spread: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = centers[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


def test_sampler_respects_n_k_q_and_never_leaks_support_into_query():
    x, y = _labelled()
    sampler = EpisodeSampler((x, y), n_way=5, k_shot=3, n_query=4, seed=1)
    for _ in range(20):
        ep = sampler.sample()
        assert ep.support_x.shape == (15, 6) and ep.query_x.shape == (20, 6)
        assert torch.equal(torch.bincount(ep.support_y), torch.full((5,), 3))
        assert torch.equal(torch.bincount(ep.query_y), torch.full((5,), 4))
        assert len(set(ep.support_index.tolist()) & set(ep.query_index.tolist())) == 0
        assert len(set(ep.classes.tolist())) == 5
        # renumbered labels point to the original classes
        assert torch.equal(y[ep.support_index], ep.classes[ep.support_y])
        assert torch.equal(y[ep.query_index], ep.classes[ep.query_y])
        assert torch.equal(ep.support_x, x[ep.support_index])


def test_sampler_restricts_classes_and_is_deterministic():
    x, y = _labelled()
    a = EpisodeSampler((x, y), 3, 1, 2, classes=[5, 6, 7], seed=3)
    b = EpisodeSampler((x, y), 3, 1, 2, classes=[5, 6, 7], seed=3)
    for _ in range(5):
        ea, eb = a.sample(), b.sample()
        assert set(ea.classes.tolist()) == {5, 6, 7}
        assert torch.equal(ea.support_index, eb.support_index)


def test_sampler_accepts_dataset_splits_and_bad_arguments_raise():
    x, y = _labelled()
    ds = ArrayDataset(x, y)
    splits = DatasetSplits("toy", "classification", ds, ds, ds, 8, (6,), 0)
    assert EpisodeSampler(splits, 2, 1, 1, split="val").sample().support_x.shape == (2, 6)
    with pytest.raises(ValueError, match="only 8 classes"):
        EpisodeSampler((x, y), 9, 1, 1)
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 21"):
        EpisodeSampler((x, y), 2, 20, 1)
    with pytest.raises(ValueError, match="n_way"):
        EpisodeSampler((x, y), 1, 1, 1)


def test_select_classes_keeps_only_those_labels():
    x, y = _labelled()
    sub = select_classes((x, y), [1, 3])
    assert set(sub.y.tolist()) == {1, 3} and len(sub) == 40


def test_prototypical_loss_equals_hand_computation():
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 2.0]])
    sy = torch.tensor([0, 0, 1, 1])
    q = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    qy = torch.tensor([0, 0])
    # prototypes: (1, 0) and (0, 3)
    d0 = torch.tensor([[1.0, 5.0], [10.0, 0.0]])  # squared distances of q to the prototypes
    expected = F.cross_entropy(-d0, qy)
    loss, acc = prototypical_loss(s, sy, q, qy, 2)
    assert torch.allclose(loss, expected)
    assert acc.item() == 0.5
    assert torch.allclose(prototypes(s, sy, 2), torch.tensor([[1.0, 0.0], [0.0, 3.0]]))


def test_prototypes_need_every_class():
    with pytest.raises(ValueError, match="at least one support sample"):
        prototypes(torch.zeros(2, 3), torch.tensor([0, 0]), 2)


def test_make_pairs_positive_share_negative_differ():
    y = torch.tensor([0, 0, 1, 1, 2])
    a1, p, a2, n = make_pairs(y, torch.Generator().manual_seed(0))
    assert torch.equal(y[a1], y[p]) and not (a1 == p).any()
    assert (y[a2] != y[n]).all()
    assert 4 not in a1.tolist()  # class 2 has no positive partner
    assert len(a2) == 5


def test_contrastive_loss_matches_hand_computation_on_given_pairs():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    pairs = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    d = lambda i, j: (F.normalize(emb[i], dim=0) - F.normalize(emb[j], dim=0)).norm()  # noqa: E731
    pos = torch.relu(d(0, 1) - 0.1)
    neg = torch.stack([torch.relu(1.5 - d(0, 2)), torch.relu(1.5 - d(1, 3))])
    expected = pos + neg[neg > 0].mean()  # the library averages the non-zero terms
    got = contrastive_loss(emb, y, pos_margin=0.1, neg_margin=1.5, pairs=pairs)
    assert torch.allclose(got, expected, atol=1e-6)


def test_triplet_loss_zero_when_margin_satisfied_and_positive_when_violated():
    y = torch.tensor([0, 0, 1, 1])
    far = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    assert triplet_loss(far, y, margin=0.2, mining="all").item() == 0.0
    mixed = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.05], [-1.0, 0.05]])
    assert triplet_loss(mixed, y, margin=0.2, mining="hard").item() > 1.0
    with pytest.raises(ValueError, match="mining"):
        triplet_loss(far, y, mining="medium")


def test_siamese_network_shares_weights():
    net = SiameseNetwork(nn.Linear(4, 3))
    x = torch.randn(5, 4)
    e1, e2 = net(x, x)
    assert torch.equal(e1, e2)
    assert torch.allclose(net.distance(x, x), torch.zeros(5), atol=1e-6)


def test_few_shot_accuracy_raw_on_separated_clusters_is_perfect():
    x, y = _labelled(spread=0.01)
    assert few_shot_accuracy(None, (x, y), n_way=5, k_shot=1, n_query=5, episodes=10) == 1.0


def _noisy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """12 classes told apart by 2 dims; 10 more dims of large noise mislead raw distances."""
    g = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(12, 2, generator=g)
    y = torch.arange(12).repeat_interleave(20)
    signal = centers[y] + 0.1 * torch.randn(len(y), 2, generator=g)
    return torch.cat([signal, 3 * torch.randn(len(y), 10, generator=g)], 1), y


@pytest.mark.parametrize("method", ["prototypical", "triplet", "contrastive"])
def test_train_embedding_learns_what_transfers_to_held_out_classes(method):
    torch.manual_seed(0)
    x, y = _noisy()
    enc = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 8))
    seen = y < 8
    train_embedding(enc, (x[seen], y[seen]), method=method, steps=60, lr=1e-2, n_way=4,
                    k_shot=3, n_query=3, batch_size=64, seed=0)
    kw = dict(n_way=4, k_shot=1, n_query=5, episodes=20, classes=[8, 9, 10, 11])
    raw = few_shot_accuracy(None, (x, y), **kw)
    learned = few_shot_accuracy(enc, (x, y), **kw)
    assert learned > raw + 0.2, (raw, learned)
    with pytest.raises(ValueError, match="method"):
        train_embedding(enc, (x, y), method="arcface")
