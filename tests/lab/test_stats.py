"""The verdict rule on hand-made inputs with values worked out by hand."""

import math

import pytest

from dltricks.lab.stats import combine, compare, decide, hedges_g, mean_ci, welch_interval


def test_welch_interval_matches_hand_computation():
    # means 2 and 5, variances 1 and 1, n = 3: se = sqrt(2/3), df = 4, t(0.975, 4) = 2.776445
    diff, low, high = welch_interval([1, 2, 3], [4, 5, 6])
    half = 2.7764451051977987 * math.sqrt(2 / 3)
    assert diff == pytest.approx(-3.0)
    assert low == pytest.approx(-3.0 - half, rel=1e-9)
    assert high == pytest.approx(-3.0 + half, rel=1e-9)


def test_welch_unequal_variances_uses_satterthwaite_df():
    # t: var 5/3 (n=4) -> 5/12 ; b: var 1 (n=3) -> 1/3
    t, b = [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0]
    diff, low, high = welch_interval(t, b)
    vt, vb = 5 / 12, 1 / 3
    df = (vt + vb) ** 2 / (vt**2 / 3 + vb**2 / 2)
    from scipy import stats

    half = stats.t.ppf(0.975, df) * math.sqrt(vt + vb)
    assert diff == pytest.approx(0.5)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))


def test_verdicts_by_direction():
    assert compare([1, 2, 3], [4, 5, 6], "lower").verdict == "supported"
    assert compare([1, 2, 3], [4, 5, 6], "higher").verdict == "contradicted"
    assert compare([4, 5, 6], [1, 2, 3], "higher").verdict == "supported"
    assert compare([1, 2, 3], [1.5, 2.5, 3.5], "higher").verdict == "inconclusive"


def test_insufficient_and_nonfinite_values():
    c = compare([0.9], [0.8, 0.7], "higher")
    assert c.verdict == "insufficient" and c.n_treatment == 1
    assert math.isnan(c.ci_low)
    c = compare([1.0, None, float("nan"), 2.0, 3.0], [4.0, 5.0, float("inf"), 6.0], "lower")
    assert (c.n_treatment, c.n_baseline) == (3, 3)
    assert c.verdict == "supported"


def test_zero_spread_collapses_to_the_difference():
    c = compare([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], "lower")  # 0/3 diverge vs 3/3
    assert (c.diff, c.ci_low, c.ci_high) == (-1.0, -1.0, -1.0)
    assert c.verdict == "supported"
    assert compare([1.0, 1.0], [1.0, 1.0], "higher").verdict == "inconclusive"
    assert math.isinf(c.effect_size) and c.effect_size < 0


def test_hedges_g_known_value():
    # diff -3, pooled sd 1, correction 1 - 3 / (4 * 6 - 9) = 0.8
    assert hedges_g([1, 2, 3], [4, 5, 6]) == pytest.approx(-2.4)
    assert compare([1, 2, 3], [4, 5, 6], "lower").effect_size == pytest.approx(-2.4)


def test_decide_and_errors():
    assert decide(0.1, 0.5, "higher") == "supported"
    assert decide(-0.5, -0.1, "higher") == "contradicted"
    assert decide(-0.1, 0.1, "lower") == "inconclusive"
    with pytest.raises(ValueError, match="direction"):
        compare([1, 2], [1, 2], "up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2"):
        welch_interval([1], [1, 2])


def test_mean_ci_and_combine():
    m, half = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and half == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert combine(["supported", "supported"]) == "supported"
    assert combine(["supported", "inconclusive"]) == "mixed"
    assert combine([]) == "insufficient"
