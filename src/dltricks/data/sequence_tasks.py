"""Synthetic sequence tasks for sequence models (Mamba, attention), at any length and vocabulary.

Sources: Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (2023),
sec. 4.1 (selective copying, induction heads); Arora et al., "Zoology: Measuring and Improving
Recall in Efficient Language Models" (2023) (multi-query associative recall, MQAR).

Convention for all tasks: x long (N, L) input tokens in [0, vocab_size); y long (N, L) with
``y[t]`` the token a causal model must output *at* position t (after reading x[0..t]), and
IGNORE_INDEX at every unscored position. ``num_classes == vocab_size``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dltricks.data.base import (
    IGNORE_INDEX,
    ArrayDataset,
    DatasetSplits,
    register_dataset,
    split_indices,
)

FRACTIONS = (0.6, 0.2, 0.2)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _splits(name: str, x: Tensor, y: Tensor, vocab_size: int, seed: int,
            fractions: tuple[float, float, float], info: dict) -> DatasetSplits:
    full = ArrayDataset(x, y)
    tr, va, te = split_indices(x.shape[0], tuple(fractions), seed=seed)
    return DatasetSplits(
        name=name, task="sequence", train=full.subset(tr), val=full.subset(va),
        test=full.subset(te), num_classes=vocab_size, input_shape=(x.shape[1],),
        spatial_dims=0, vocab_size=vocab_size, info={**info, "fractions": list(fractions)},
    )


def _random_positions(n: int, length: int, k: int, g: torch.Generator) -> Tensor:
    """(n, k) sorted distinct positions in [0, length) per row."""
    return torch.rand(n, length, generator=g).argsort(dim=1)[:, :k].sort(dim=1).values


@register_dataset("selective_copying", task="sequence",
                  description="Mamba selective copying: recall scattered tokens in order")
def selective_copying(seed: int = 0, n_samples: int = 2000, seq_len: int = 128,
                      n_memorize: int = 16, vocab_size: int = 16,
                      fractions: tuple[float, float, float] = FRACTIONS) -> DatasetSplits:
    """Selective copying (Gu & Dao 2023, sec. 4.1).

    Token layout (L = seq_len, M = n_memorize, B = L - M body positions):
        token 0 = noise, token 1 = marker, tokens 2..vocab_size-1 = data.
        x[0:B]: noise everywhere except M random positions that hold data tokens d_1..d_M
        (in position order); x[B:L]: M marker tokens.
        y[B + j] = d_{j+1} for j = 0..M-1; IGNORE_INDEX elsewhere.

    Args:
        seed: generator and split seed.
        n_samples: number of sequences.
        seq_len: total length L, body plus the M marker positions.
        n_memorize: M, the number of tokens to copy.
        vocab_size: size of the token vocabulary, including noise and marker (>= 3).
        fractions: train, val, test fractions.
    """
    _check(n_memorize >= 1, f"n_memorize must be at least 1, got {n_memorize}.")
    _check(seq_len >= 2 * n_memorize,
           f"seq_len={seq_len} is too short for n_memorize={n_memorize}: the body of "
           f"seq_len - n_memorize tokens must hold all n_memorize tokens, so seq_len must be "
           f"at least {2 * n_memorize}.")
    _check(vocab_size >= 3, f"vocab_size must be at least 3 (noise, marker, one data token), "
                            f"got {vocab_size}.")
    _check(n_samples >= 3, f"n_samples must be at least 3, got {n_samples}.")
    g = torch.Generator().manual_seed(seed)
    body = seq_len - n_memorize
    data = torch.randint(2, vocab_size, (n_samples, n_memorize), generator=g)
    pos = _random_positions(n_samples, body, n_memorize, g)
    x = torch.zeros(n_samples, seq_len, dtype=torch.long)
    x.scatter_(1, pos, data)
    x[:, body:] = 1
    y = torch.full_like(x, IGNORE_INDEX)
    y[:, body:] = data
    info = {"seq_len": seq_len, "n_memorize": n_memorize, "noise_token": 0, "marker_token": 1,
            "data_tokens": [2, vocab_size - 1]}
    return _splits("selective_copying", x, y, vocab_size, seed, fractions, info)


@register_dataset("induction_heads", task="sequence",
                  description="Mamba induction heads: after the trigger, recall what followed it")
def induction_heads(seed: int = 0, n_samples: int = 2000, seq_len: int = 64,
                    vocab_size: int = 16,
                    fractions: tuple[float, float, float] = FRACTIONS) -> DatasetSplits:
    """Induction heads (Olsson et al. 2022; the Mamba version, Gu & Dao 2023, sec. 4.1).

    Token layout (L = seq_len): token 0 = trigger, tokens 1..vocab_size-1 = ordinary tokens.
        x[0:L-1]: random ordinary tokens, except x[p] = trigger and x[p+1] = target at one
        random p in [0, L-3]; x[L-1] = trigger.
        y[L-1] = target (the token that followed the trigger); IGNORE_INDEX elsewhere.

    Args:
        seed: generator and split seed.
        n_samples: number of sequences.
        seq_len: L (>= 3).
        vocab_size: vocabulary size including the trigger (>= 3).
        fractions: train, val, test fractions.
    """
    _check(seq_len >= 3, f"seq_len must be at least 3 (trigger, target, final trigger), "
                         f"got {seq_len}.")
    _check(vocab_size >= 3, f"vocab_size must be at least 3, got {vocab_size}.")
    _check(n_samples >= 3, f"n_samples must be at least 3, got {n_samples}.")
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab_size, (n_samples, seq_len), generator=g)
    p = torch.randint(0, seq_len - 2, (n_samples,), generator=g)
    rows = torch.arange(n_samples)
    x[rows, p] = 0
    target = x[rows, p + 1]
    x[:, -1] = 0
    y = torch.full_like(x, IGNORE_INDEX)
    y[:, -1] = target
    info = {"seq_len": seq_len, "trigger_token": 0}
    return _splits("induction_heads", x, y, vocab_size, seed, fractions, info)


@register_dataset("mqar", task="sequence",
                  description="Zoology multi-query associative recall")
def mqar(seed: int = 0, n_samples: int = 2000, seq_len: int = 64, num_kv_pairs: int = 8,
         vocab_size: int = 64,
         fractions: tuple[float, float, float] = FRACTIONS) -> DatasetSplits:
    """Multi-query associative recall (Arora et al. 2023).

    Token layout (L = seq_len, P = num_kv_pairs, V = vocab_size, h = (V - 1) // 2):
        token 0 = noise; keys are tokens 1..h, values are tokens h+1..V-1.
        x[0:2P] = k_1 v_1 k_2 v_2 ... k_P v_P with P distinct keys and random values;
        x[2P:L]: noise, except that each key appears once (in random order) at P random
        distinct positions t as a query.
        y[t] = the value paired with x[t] at each query position t; IGNORE_INDEX elsewhere.

    Args:
        seed: generator and split seed.
        n_samples: number of sequences.
        seq_len: L (>= 3 P).
        num_kv_pairs: P.
        vocab_size: V; needs (V - 1) // 2 >= P distinct keys.
        fractions: train, val, test fractions.
    """
    _check(num_kv_pairs >= 1, f"num_kv_pairs must be at least 1, got {num_kv_pairs}.")
    _check(seq_len >= 3 * num_kv_pairs,
           f"seq_len={seq_len} is too short for num_kv_pairs={num_kv_pairs}: the pairs take "
           f"2 * num_kv_pairs tokens and the queries num_kv_pairs more, so seq_len must be at "
           f"least {3 * num_kv_pairs}.")
    n_keys = (vocab_size - 1) // 2
    _check(n_keys >= num_kv_pairs,
           f"vocab_size={vocab_size} gives only {n_keys} distinct keys for "
           f"num_kv_pairs={num_kv_pairs}; use vocab_size >= {2 * num_kv_pairs + 1}.")
    _check(n_samples >= 3, f"n_samples must be at least 3, got {n_samples}.")
    g = torch.Generator().manual_seed(seed)
    n, kv = n_samples, num_kv_pairs
    keys = 1 + torch.rand(n, n_keys, generator=g).argsort(dim=1)[:, :kv]  # (N, P) distinct
    values = torch.randint(1 + n_keys, vocab_size, (n, kv), generator=g)
    x = torch.zeros(n, seq_len, dtype=torch.long)
    x[:, 0 : 2 * kv : 2] = keys
    x[:, 1 : 2 * kv : 2] = values
    order = torch.rand(n, kv, generator=g).argsort(dim=1)  # which pair each query asks about
    qpos = 2 * kv + _random_positions(n, seq_len - 2 * kv, kv, g)  # (N, P)
    x.scatter_(1, qpos, keys.gather(1, order))
    y = torch.full_like(x, IGNORE_INDEX)
    y.scatter_(1, qpos, values.gather(1, order))
    info = {"seq_len": seq_len, "num_kv_pairs": kv, "noise_token": 0, "key_tokens": [1, n_keys],
            "value_tokens": [n_keys + 1, vocab_size - 1]}
    return _splits("mqar", x, y, vocab_size, seed, fractions, info)
