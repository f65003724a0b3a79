"""Tests for positional encodings: sinusoidal, learned, rotary and none."""

import math

import pytest
import torch

from dltricks.nn.position import (
    LearnedPositionalEmbedding,
    NoPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    get_position,
    sinusoidal_table,
)


def test_sinusoidal_table_closed_form():
    t = sinusoidal_table(50, 6)
    p = torch.arange(50.0)
    for i in range(3):
        w = 1.0 / 10000 ** (2 * i / 6)
        torch.testing.assert_close(t[:, 2 * i], torch.sin(p * w))
        torch.testing.assert_close(t[:, 2 * i + 1], torch.cos(p * w))
    # odd widths keep the sine of the last frequency
    assert sinusoidal_table(5, 7).shape == (5, 7)
    torch.testing.assert_close(sinusoidal_table(5, 7)[:, 6], torch.sin(torch.arange(5.0) /
                                                                        10000 ** (6 / 7)))


def test_sinusoidal_offset_continues_the_table():
    pe = SinusoidalPositionalEncoding(8)
    x = torch.zeros(1, 10, 8)
    torch.testing.assert_close(pe(x[:, :4], offset=6), pe(x)[:, 6:])
    assert not list(pe.parameters())


def test_learned_positions_train_and_refuse_long_inputs():
    pe = LearnedPositionalEmbedding(4, max_len=5)
    x = torch.zeros(2, 3, 4)
    torch.testing.assert_close(pe(x, offset=2)[0], pe.weight[2:5])
    pe(x).sum().backward()
    assert pe.weight.grad[:3].abs().sum() > 0 and pe.weight.grad[3:].abs().sum() == 0
    with pytest.raises(ValueError, match="cover 5 steps"):
        pe(x, offset=3)


def rope_complex(x, pos, base=10000.0):
    """Independent RoPE: each feature pair is a complex number times exp(i·m·θ)."""
    e = x.shape[-1]
    theta = base ** (-torch.arange(0, e, 2, dtype=torch.float64) / e)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], e // 2, 2).contiguous())
    rot = torch.polar(torch.ones_like(theta), pos.double()[:, None] * theta)
    return torch.view_as_real(z * rot).flatten(-2).float()


def test_rope_matches_complex_rotation_and_preserves_norms():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 6, 8)
    out = rope(x, offset=4)
    torch.testing.assert_close(out, rope_complex(x, torch.arange(4, 10)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rope(x[:, :, :1]), x[:, :, :1])  # position 0: no rotation


def test_rope_scores_depend_on_relative_position_only():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(16), torch.randn(16)

    def score(m, n):
        qm = rope(q.view(1, 1, 1, 16), offset=m)
        kn = rope(k.view(1, 1, 1, 16), offset=n)
        return (qm * kn).sum().item()

    assert score(7, 3) == pytest.approx(score(107, 103), rel=1e-4, abs=1e-4)
    assert score(7, 3) == pytest.approx(score(4, 0), rel=1e-4, abs=1e-4)
    assert score(7, 3) != pytest.approx(score(3, 7), rel=1e-3)


def test_get_position_by_name():
    assert isinstance(get_position("sinusoidal", 8), SinusoidalPositionalEncoding)
    assert isinstance(get_position("learned", 8, max_len=4), LearnedPositionalEmbedding)
    for name in ("rope", "none", None):  # RoPE acts inside attention, nothing is added
        assert isinstance(get_position(name, 8), NoPositionalEncoding)
    with pytest.raises(ValueError, match="allowed: sinusoidal, learned, rope, none"):
        get_position("alibi", 8)
    with pytest.raises(ValueError, match="max_len"):
        get_position("learned", 8)
    with pytest.raises(ValueError, match="even head dimension"):
        RotaryEmbedding(7)
    assert math.isclose(RotaryEmbedding(4).inv_freq[1].item(), 0.01, rel_tol=1e-6)
