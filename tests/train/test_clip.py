"""Gradient clipping on known vectors, and the gradient-norm recorder."""

from __future__ import annotations

import io
import math

import pytest
import torch

from dltricks.train.clip import GradNormStats, clip_gradients


def _params(*grads):
    ps = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros_like(torch.as_tensor(g, dtype=torch.float64)))
        p.grad = torch.as_tensor(g, dtype=torch.float64).clone()
        ps.append(p)
    return ps


def test_clip_by_norm_scales_to_max():
    a, b = _params([3.0, 0.0], [[4.0]])  # total norm 5
    norm, clipped = clip_gradients([a, b], "norm", 1.0)
    assert isinstance(norm, torch.Tensor) and norm.ndim == 0
    assert norm.item() == pytest.approx(5.0) and clipped is True
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.0], dtype=torch.float64))
    torch.testing.assert_close(b.grad, torch.tensor([[0.8]], dtype=torch.float64))


def test_clip_by_norm_below_max_is_untouched():
    a, b = _params([3.0, 0.0], [[4.0]])
    norm, clipped = clip_gradients(iter([a, b]), "norm", 10.0)  # generators work too
    assert norm.item() == pytest.approx(5.0) and clipped is False
    assert a.grad.tolist() == [3.0, 0.0] and b.grad.tolist() == [[4.0]]


def test_clip_by_value():
    (a,) = _params([0.5, -2.0, 3.0])
    no_grad = torch.nn.Parameter(torch.ones(2))  # skipped
    norm, clipped = clip_gradients([a, no_grad], "value", 1.0)
    assert norm.item() == pytest.approx(math.sqrt(0.25 + 4 + 9)) and clipped is True
    assert a.grad.tolist() == [0.5, -1.0, 1.0]
    norm, clipped = clip_gradients(a, "value", 1.0)  # now within range
    assert norm.item() == pytest.approx(math.sqrt(2.25)) and clipped is False


def test_none_only_measures_and_bad_args():
    (a,) = _params([30.0, 40.0])
    norm, clipped = clip_gradients([a], "none", 1.0)
    assert norm.item() == pytest.approx(50.0) and clipped is False
    assert a.grad.tolist() == [30.0, 40.0]
    with pytest.raises(ValueError, match="Unknown clip mode"):
        clip_gradients([a], "global", 1.0)
    with pytest.raises(ValueError, match="positive"):
        clip_gradients([a], "norm", 0.0)
    norm, clipped = clip_gradients([torch.nn.Parameter(torch.ones(2))], "value", 1.0)
    assert norm.item() == 0.0 and clipped is False


def test_grad_norm_stats_percentiles_and_state():
    stats = GradNormStats()
    for i in range(1, 101):
        stats.record(torch.tensor(float(i)), i > 90)
    p = stats.percentiles()
    # linear interpolation over 1..100: p50 = 50.5, p90 = 90.1, p99 = 99.01
    assert p["p50"] == pytest.approx(50.5) and p["p90"] == pytest.approx(90.1)
    assert p["p99"] == pytest.approx(99.01) and p["max"] == 100.0 and p["nonfinite"] == 0
    assert stats.fraction_clipped == pytest.approx(0.1)

    buf = io.BytesIO()
    torch.save(stats.state_dict(), buf)
    buf.seek(0)
    resumed = GradNormStats()
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.summary() == stats.summary()
    resumed.record(float("inf"), True)
    assert resumed.percentiles()["max"] == 100.0 and resumed.percentiles()["nonfinite"] == 1
    assert resumed.summary()["steps"] == 101
    assert math.isnan(GradNormStats().percentiles()["p50"])
    assert GradNormStats().fraction_clipped == 0.0
