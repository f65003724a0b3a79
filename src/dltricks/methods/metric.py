"""One-shot and metric learning: episodes, Siamese/contrastive, triplet with mining, prototypes.

* **Episodic N-way K-shot sampling** (Vinyals et al. 2016, "Matching Networks for One Shot
  Learning"): an episode draws N classes, K labelled *support* samples and Q *query* samples per
  class, with no sample in both; labels are renumbered 0..N-1 in the order of the drawn classes.
* **Siamese networks with a contrastive loss** (Bromley et al. 1993; Chopra, Hadsell & LeCun
  2005; Hadsell, Chopra & LeCun 2006): one shared encoder embeds both members of a pair; the
  loss pulls same-class pairs together and pushes different-class pairs beyond a margin.
* **Triplet loss with mining** (Weinberger & Saul 2009; Schroff, Kalenichenko & Philbin 2015,
  FaceNet): ``max(0, d(a, p) - d(a, n) + margin)`` over (anchor, positive, negative) triplets
  mined from the batch ("semihard", "hard" or "all").
* **Prototypical networks** (Snell, Swersky & Zemel 2017): a class prototype is the mean
  embedding of its support samples; a query is scored by the negative squared Euclidean distance
  to each prototype, and the loss is the cross-entropy of those scores.

The contrastive and triplet losses and the triplet miner come from pytorch-metric-learning
(Musgrave et al. 2020) rather than being rewritten; the prototypical loss is three lines of
tensor algebra that the library has no episodic version of.

Axis letters: N ways (classes in an episode), K shots, Q queries per class, S = N*K support
samples, M = N*Q query samples, B batch, D embedding size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.data.base import ArrayDataset, DatasetSplits

Labelled = ArrayDataset | DatasetSplits | tuple[Tensor, Tensor]
Mining = Literal["semihard", "hard", "easy", "all"]


def _xy(data: Labelled, split: str = "train") -> tuple[Tensor, Tensor]:
    """(x, y) of a dataset, one split of DatasetSplits, or an (x, y) pair."""
    if isinstance(data, DatasetSplits):
        if data.task != "classification":
            raise ValueError(f"Episodes need a classification dataset; {data.name!r} is a "
                             f"{data.task} task.")
        data = data.split(split)
    if isinstance(data, ArrayDataset):
        return data.x, data.y
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y disagree on the number of samples: {x.shape[0]} vs "
                             f"{y.shape[0]}.")
        return x, y
    raise ValueError("Give an ArrayDataset, a DatasetSplits or an (x, y) pair of tensors.")


def select_classes(data: Labelled, classes: Sequence[int], split: str = "train"
                   ) -> ArrayDataset:
    """The samples of ``data`` whose label is in ``classes`` (labels unchanged).

    Used to hold classes out of training: train an embedding on some classes, then sample
    episodes from the others.
    """
    x, y = _xy(data, split)
    mask = torch.isin(y, torch.as_tensor(list(classes), dtype=y.dtype))
    return ArrayDataset(x[mask], y[mask])


@dataclass
class Episode:
    """One N-way K-shot episode.

    Attributes:
        support_x: (S, ...) support inputs, grouped by class (K per class, class order).
        support_y: (S,) labels renumbered to 0..N-1.
        query_x: (M, ...) query inputs.
        query_y: (M,) labels renumbered to 0..N-1.
        classes: (N,) the original labels of ways 0..N-1.
        support_index, query_index: positions of the samples in the source dataset.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: Tensor
    support_index: Tensor
    query_index: Tensor


class EpisodeSampler:
    """Draws N-way K-shot episodes from any labelled dataset.

    Args:
        data: an ArrayDataset, a DatasetSplits (``split`` is used) or an (x, y) pair.
        n_way: N, classes per episode.
        k_shot: K, support samples per class.
        n_query: Q, query samples per class (disjoint from the support).
        classes: restrict episodes to these labels (e.g. classes held out of training).
        split: which split of a DatasetSplits to sample from.
        seed: seed of the episode generator; the same seed gives the same episodes.

    Example::

        sampler = EpisodeSampler(create_dataset("digits"), n_way=5, k_shot=1, n_query=15,
                                 classes=[5, 6, 7, 8, 9], split="test")
        ep = sampler.sample()
    """

    def __init__(self, data: Labelled, n_way: int, k_shot: int, n_query: int = 15,
                 classes: Sequence[int] | None = None, split: str = "train",
                 seed: int = 0) -> None:
        if n_way < 2:
            raise ValueError(f"n_way must be at least 2, got {n_way}.")
        if k_shot < 1 or n_query < 1:
            raise ValueError(f"k_shot and n_query must be >= 1, got {k_shot} and {n_query}.")
        self.x, self.y = _xy(data, split)
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        pool = sorted(set(self.y.tolist())) if classes is None else sorted(set(classes))
        self.by_class = {c: torch.nonzero(self.y == c).flatten() for c in pool}
        need = k_shot + n_query
        small = {c: len(i) for c, i in self.by_class.items() if len(i) < need}
        if small:
            raise ValueError(f"Each class needs k_shot + n_query = {need} samples; these have "
                             f"fewer: {small}.")
        if len(pool) < n_way:
            raise ValueError(f"n_way={n_way} but only {len(pool)} classes are available "
                             f"({pool}).")
        self.classes = pool
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> Episode:
        """One episode: N random classes, K support and Q query samples of each, disjoint."""
        g = self.generator
        chosen = torch.randperm(len(self.classes), generator=g)[: self.n_way]
        classes = torch.tensor([self.classes[i] for i in chosen.tolist()])
        sup, qry = [], []
        for c in classes.tolist():
            idx = self.by_class[c]
            perm = idx[torch.randperm(len(idx), generator=g)]
            sup.append(perm[: self.k_shot])
            qry.append(perm[self.k_shot : self.k_shot + self.n_query])
        s_idx, q_idx = torch.cat(sup), torch.cat(qry)
        ways = torch.arange(self.n_way)
        return Episode(
            support_x=self.x[s_idx], support_y=ways.repeat_interleave(self.k_shot),
            query_x=self.x[q_idx], query_y=ways.repeat_interleave(self.n_query),
            classes=classes, support_index=s_idx, query_index=q_idx,
        )

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample()


# --------------------------------------------------------------------------- prototypes


def prototypes(support_emb: Tensor, support_y: Tensor, n_way: int) -> Tensor:
    """Class means of the support embeddings (Snell et al. 2017, eq. 1).

    Args:
        support_emb: (S, D) embeddings.
        support_y: (S,) labels in [0, n_way).
        n_way: N.

    Returns:
        (N, D) prototypes.
    """
    counts = torch.bincount(support_y, minlength=n_way)
    if counts.numel() != n_way or (counts == 0).any():
        raise ValueError(f"Every class 0..{n_way - 1} needs at least one support sample; "
                         f"counts are {counts.tolist()}.")
    sums = torch.zeros(n_way, support_emb.shape[1], dtype=support_emb.dtype,
                       device=support_emb.device).index_add(0, support_y, support_emb)
    return sums / counts.unsqueeze(1).to(support_emb)


def prototype_logits(query_emb: Tensor, protos: Tensor) -> Tensor:
    """Negative squared Euclidean distances (M, N) of queries to prototypes (eq. 2)."""
    return -torch.cdist(query_emb, protos).pow(2)


def prototypical_loss(support_emb: Tensor, support_y: Tensor, query_emb: Tensor,
                      query_y: Tensor, n_way: int | None = None) -> tuple[Tensor, Tensor]:
    """Prototypical-network loss and accuracy of one episode.

    Args:
        support_emb: (S, D); support_y: (S,) in [0, N).
        query_emb: (M, D); query_y: (M,) in [0, N).
        n_way: N (default: ``support_y.max() + 1``).

    Returns:
        (cross-entropy of the distance logits, accuracy), both 0-d tensors.
    """
    n_way = int(support_y.max()) + 1 if n_way is None else n_way
    logits = prototype_logits(query_emb, prototypes(support_emb, support_y, n_way))
    loss = F.cross_entropy(logits, query_y)
    return loss, (logits.argmax(-1) == query_y).float().mean()


# --------------------------------------------------------------------------- pair/triplet losses


def make_pairs(y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
    """Siamese pairs from a batch: every sample with one positive and one negative partner.

    Returns:
        ``(a1, p, a2, n)`` index tensors in pytorch-metric-learning's pair format: (a1[i], p[i])
        share a label, (a2[i], n[i]) do not. Samples without a partner are skipped.
    """
    a1, p, a2, n = [], [], [], []
    for i, c in enumerate(y.tolist()):
        same = torch.nonzero(y == c).flatten()
        same = same[same != i]
        diff = torch.nonzero(y != c).flatten()
        if len(same):
            a1.append(i)
            p.append(int(same[torch.randint(len(same), (1,), generator=generator)]))
        if len(diff):
            a2.append(i)
            n.append(int(diff[torch.randint(len(diff), (1,), generator=generator)]))
    return tuple(torch.tensor(v, dtype=torch.long) for v in (a1, p, a2, n))


class SiameseNetwork(nn.Module):
    """Two inputs through one shared encoder (Bromley et al. 1993).

    Args:
        encoder: any module mapping (B, ...) inputs to (B, D) embeddings.

    Shapes:
        (x1 (B, ...), x2 (B, ...)) → (e1 (B, D), e2 (B, D)); :meth:`distance` → (B,).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        e = self.encoder(torch.cat([x1, x2]))
        return e[: len(x1)], e[len(x1):]

    def distance(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Euclidean distance of the L2-normalized embeddings of each pair."""
        e1, e2 = self(x1, x2)
        return (F.normalize(e1, dim=-1) - F.normalize(e2, dim=-1)).norm(dim=-1)


def contrastive_loss(emb: Tensor, y: Tensor, pos_margin: float = 0.0, neg_margin: float = 1.0,
                     pairs: tuple[Tensor, ...] | None = None) -> Tensor:
    """Contrastive loss (Hadsell et al. 2006) of pytorch-metric-learning over L2-normalized
    embeddings: ``[d - pos_margin]_+`` for positive pairs, ``[neg_margin - d]_+`` for negative.

    Args:
        emb: (B, D) embeddings; y: (B,) labels.
        pos_margin, neg_margin: margins of the Euclidean distance.
        pairs: ``(a1, p, a2, n)`` from :func:`make_pairs` (Siamese pairs); None uses every
            pair of the batch.
    """
    from pytorch_metric_learning import losses

    loss_fn = losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)
    return loss_fn(emb, y, indices_tuple=pairs)


def triplet_loss(emb: Tensor, y: Tensor, margin: float = 0.2, mining: Mining = "semihard"
                 ) -> Tensor:
    """Triplet margin loss with a triplet miner, both from pytorch-metric-learning.

    Args:
        emb: (B, D) embeddings (L2-normalized inside the library's distance).
        y: (B,) labels.
        margin: the triplet margin.
        mining: ``"semihard"`` (negatives farther than the positive but within the margin,
            FaceNet), ``"hard"`` (negatives closer than the positive), ``"easy"`` or ``"all"``
            triplets that violate the margin.
    """
    from pytorch_metric_learning import losses, miners

    if mining not in ("semihard", "hard", "easy", "all"):
        raise ValueError(f"mining must be 'semihard', 'hard', 'easy' or 'all', got {mining!r}.")
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets=mining)
    triplets = miner(emb, y)
    return losses.TripletMarginLoss(margin=margin)(emb, y, indices_tuple=triplets)


# --------------------------------------------------------------------------- training and eval

Method = Literal["prototypical", "triplet", "contrastive"]


def train_embedding(encoder: nn.Module, data: Labelled, method: Method = "prototypical",
                    steps: int = 300, lr: float = 1e-3, n_way: int = 5, k_shot: int = 5,
                    n_query: int = 10, batch_size: int = 128, margin: float = 0.2,
                    mining: Mining = "semihard", seed: int = 0, split: str = "train",
                    log: Callable[[int, float], None] | None = None) -> list[float]:
    """Trains ``encoder`` as an embedding with one of the metric-learning losses.

    Args:
        encoder: module mapping (B, ...) inputs to (B, D) embeddings; trained in place.
        data: the training data (its classes are the "seen" classes).
        method: ``"prototypical"`` (episodes of ``n_way``/``k_shot``/``n_query``),
            ``"triplet"`` (random batches, mined triplets) or ``"contrastive"`` (random
            batches, Siamese pairs from :func:`make_pairs`).
        steps: optimizer steps (Adam).
        lr: learning rate.
        n_way, k_shot, n_query: episode shape for the prototypical loss.
        batch_size: batch size of the pair and triplet losses.
        margin: margin of the triplet loss (negative margin of the contrastive loss is 1).
        mining: triplet mining (see :func:`triplet_loss`).
        seed: seed of the episodes and batches.
        split: split of a DatasetSplits to train on.
        log: called with (step, loss) after every step.

    Returns:
        The training loss of every step.
    """
    if method not in ("prototypical", "triplet", "contrastive"):
        raise ValueError(f"method must be 'prototypical', 'triplet' or 'contrastive', "
                         f"got {method!r}.")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    x, y = _xy(data, split)
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    sampler = EpisodeSampler((x, y), n_way, k_shot, n_query, seed=seed) \
        if method == "prototypical" else None
    encoder.train()
    losses: list[float] = []
    for step in range(steps):
        if sampler is not None:
            ep = sampler.sample()
            emb = encoder(torch.cat([ep.support_x, ep.query_x]))
            s = len(ep.support_y)
            loss, _ = prototypical_loss(emb[:s], ep.support_y, emb[s:], ep.query_y, n_way)
        else:
            idx = torch.randint(len(y), (min(batch_size, len(y)),), generator=g)
            emb, yb = encoder(x[idx]), y[idx]
            if method == "triplet":
                loss = triplet_loss(emb, yb, margin=margin, mining=mining)
            else:
                loss = contrastive_loss(emb, yb, pairs=make_pairs(yb, g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1])
    return losses


@torch.no_grad()
def few_shot_accuracy(embed: Callable[[Tensor], Tensor] | None, data: Labelled, n_way: int,
                      k_shot: int, n_query: int = 15, episodes: int = 100,
                      classes: Sequence[int] | None = None, split: str = "test",
                      seed: int = 0) -> float:
    """Mean nearest-prototype accuracy over episodes (for K = 1 this is 1-nearest neighbour).

    Args:
        embed: maps (B, ...) inputs to (B, D) features; None uses the raw inputs flattened.
        data: the evaluation data.
        n_way, k_shot, n_query: episode shape.
        episodes: number of episodes averaged.
        classes: restrict episodes to these labels (the held-out classes).
        split: split of a DatasetSplits to sample from.
        seed: episode seed; the same seed gives the same episodes for every ``embed``, so
            embeddings are compared on identical episodes.

    Returns:
        Accuracy over all query samples of all episodes.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}.")
    sampler = EpisodeSampler(data, n_way, k_shot, n_query, classes=classes, split=split,
                             seed=seed)
    correct = 0.0
    for _ in range(episodes):
        ep = sampler.sample()
        both = torch.cat([ep.support_x, ep.query_x])
        emb = both.flatten(1).float() if embed is None else embed(both).flatten(1)
        s = len(ep.support_y)
        _, acc = prototypical_loss(emb[:s], ep.support_y, emb[s:], ep.query_y, n_way)
        correct += float(acc)
    return correct / episodes


__all__ = [
    "Episode",
    "EpisodeSampler",
    "SiameseNetwork",
    "contrastive_loss",
    "few_shot_accuracy",
    "make_pairs",
    "prototype_logits",
    "prototypes",
    "prototypical_loss",
    "select_classes",
    "train_embedding",
    "triplet_loss",
]
