"""Tests for stochastic depth (DropPath)."""

import pytest
import torch

from dltricks.nn import DropPath, drop_path


def test_eval_is_identity():
    x = torch.randn(16, 4, 5)
    m = DropPath(0.5).eval()
    assert m(x) is x


def test_p_zero_is_identity_in_training():
    x = torch.randn(16, 4, 5)
    assert DropPath(0.0).train()(x) is x


def test_train_drops_whole_samples_and_preserves_expectation():
    torch.manual_seed(0)
    p = 0.3
    x = torch.ones(20000, 3, 2)
    y = DropPath(p).train()(x)
    per_sample = y.flatten(1)
    zero = (per_sample == 0).all(1)
    kept = (per_sample == 1 / (1 - p)).all(1)
    assert bool((zero | kept).all())  # each sample is dropped entirely or scaled entirely
    assert 0.28 < zero.float().mean().item() < 0.32
    assert abs(y.mean().item() - 1.0) < 0.02


def test_gradient_flows_only_through_kept_samples():
    torch.manual_seed(1)
    x = torch.randn(64, 8, requires_grad=True)
    y = drop_path(x, 0.5, training=True)
    y.sum().backward()
    kept = (y != 0).any(1)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert (x.grad[~kept] == 0).all() and (~kept).any()


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_invalid_p(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(p)
