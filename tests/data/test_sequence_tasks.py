"""Sequence tasks: the scored targets follow from the inputs by each task's rule.

The checks below re-derive every target with a plain per-sample loop, independent of the
vectorised generators.
"""

from __future__ import annotations

import pytest
import torch

from dltricks.data import IGNORE_INDEX, create_dataset


def _all(s):
    return (torch.cat([s.train.x, s.val.x, s.test.x]), torch.cat([s.train.y, s.val.y, s.test.y]))


@pytest.mark.parametrize(("seq_len", "n_memorize", "vocab"), [(128, 16, 16), (40, 5, 7)])
def test_selective_copying_targets_are_the_data_tokens_in_order(seq_len, n_memorize, vocab):
    s = create_dataset("selective_copying", n_samples=100, seq_len=seq_len,
                       n_memorize=n_memorize, vocab_size=vocab)
    x, y = _all(s)
    assert x.shape == (100, seq_len) and s.vocab_size == vocab == s.num_classes
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        body = xi[: seq_len - n_memorize]
        data = [t for t in body if t >= 2]  # non-noise, non-marker tokens in order
        assert len(data) == n_memorize
        assert all(t in (0,) or t >= 2 for t in body)
        assert xi[seq_len - n_memorize:] == [1] * n_memorize
        scored = [(i, t) for i, t in enumerate(yi) if t != IGNORE_INDEX]
        assert [i for i, _ in scored] == list(range(seq_len - n_memorize, seq_len))
        assert [t for _, t in scored] == data


def test_induction_heads_target_follows_the_only_earlier_trigger():
    s = create_dataset("induction_heads", n_samples=100, seq_len=30, vocab_size=8)
    x, y = _all(s)
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        trigger = xi[-1]
        earlier = [i for i, t in enumerate(xi[:-1]) if t == trigger]
        assert len(earlier) == 1 and earlier[0] + 1 < len(xi) - 1
        scored = [i for i, t in enumerate(yi) if t != IGNORE_INDEX]
        assert scored == [len(xi) - 1]
        assert yi[-1] == xi[earlier[0] + 1]


@pytest.mark.parametrize(("seq_len", "pairs", "vocab"), [(64, 8, 64), (24, 8, 17)])
def test_mqar_each_query_is_answered_by_its_pair(seq_len, pairs, vocab):
    s = create_dataset("mqar", n_samples=100, seq_len=seq_len, num_kv_pairs=pairs,
                       vocab_size=vocab)
    x, y = _all(s)
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        table = {xi[2 * j]: xi[2 * j + 1] for j in range(pairs)}
        assert len(table) == pairs  # keys are distinct
        assert not set(table) & set(table.values())  # key and value tokens do not overlap
        scored = [i for i, t in enumerate(yi) if t != IGNORE_INDEX]
        assert len(scored) == pairs and min(scored) >= 2 * pairs
        assert sorted(xi[i] for i in scored) == sorted(table)  # every key queried once
        for i in scored:
            assert yi[i] == table[xi[i]]
        queries = set(scored)
        assert all(xi[i] == 0 for i in range(2 * pairs, seq_len) if i not in queries)


@pytest.mark.parametrize(("name", "kwargs", "field"), [
    ("selective_copying", {"seq_len": 20, "n_memorize": 16}, "seq_len"),
    ("selective_copying", {"vocab_size": 2}, "vocab_size"),
    ("induction_heads", {"seq_len": 2}, "seq_len"),
    ("mqar", {"seq_len": 20, "num_kv_pairs": 8}, "seq_len"),
    ("mqar", {"vocab_size": 10, "num_kv_pairs": 8}, "vocab_size"),
])
def test_bad_sequence_kwargs_raise_a_sentence(name, kwargs, field):
    with pytest.raises(ValueError, match=field) as err:
        create_dataset(name, **kwargs)
    assert str(err.value).endswith(".")
