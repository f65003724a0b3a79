"""The verdict rule on hand-made inputs, checked against scipy's own tests and by hand.

Each expected value comes from a different computation than the module's: scipy.stats
``ttest_rel``/``ttest_ind`` intervals, closed forms worked out by hand (binomial and
hypergeometric probabilities), or a Monte-Carlo simulation of the test's power.
"""

import math

import numpy as np
import pytest
from scipy import stats

from dltricks.lab.stats import (
    RULE,
    compare,
    decide,
    exact_binary,
    hedges_g,
    holm,
    holm_verdict,
    impute_failures,
    mean_ci,
    min_detectable_effect,
    paired_interval,
    paired_power,
    welch_interval,
)

T = [0.91, 0.88, 0.93, 0.90, 0.86]
B = [0.89, 0.85, 0.92, 0.86, 0.85]


def test_paired_interval_matches_scipy_ttest_rel():
    diff, low, high, p = paired_interval(T, B)
    ref = stats.ttest_rel(T, B)
    ci = ref.confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(np.subtract(T, B)))
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert p == pytest.approx(ref.pvalue, rel=1e-10)


def test_pairing_decides_where_welch_does_not():
    # a small, consistent per-seed gain on top of a large seed-to-seed spread
    c = compare(T, B, "higher")
    assert c.kind == "paired" and c.verdict == "supported"
    assert c.welch_verdict == "inconclusive"
    welch = stats.ttest_ind(T, B, equal_var=False).confidence_interval(0.95)
    assert (c.welch_low, c.welch_high) == pytest.approx((welch.low, welch.high), rel=1e-10)


def test_welch_interval_matches_scipy():
    t, b = [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0]
    ci = stats.ttest_ind(t, b, equal_var=False).confidence_interval(0.95)
    diff, low, high = welch_interval(t, b)
    assert diff == pytest.approx(0.5)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_verdicts_by_direction():
    assert compare([1, 2, 3.1], [4, 5, 6], "lower").verdict == "supported"
    assert compare([1, 2, 3.1], [4, 5, 6], "higher").verdict == "contradicted"
    assert compare([1.0, 2.5, 2.9], [1.5, 2.0, 3.5], "higher").verdict == "inconclusive"
    assert decide(0.1, 0.5, "higher") == "supported"
    assert decide(-0.5, -0.1, "higher") == "contradicted"
    assert decide(-0.1, 0.1, "lower") == "inconclusive"


def test_binary_outcomes_use_the_exact_test():
    # 3/3 diverge vs 0/3: three discordant pairs, McNemar p = 2 * 0.5^3 = 0.25; Fisher's exact
    # test of the 2x2 table [[0, 3], [3, 0]] is 2 / C(6, 3) = 0.1 (the number)
    c = compare([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], "lower")
    assert c.kind == "exact" and c.verdict == "inconclusive"
    assert c.p_value == pytest.approx(0.25) and c.p_fisher == pytest.approx(0.1)
    # Clopper-Pearson for 0 of 3: upper bound 1 - 0.025^(1/3); mapped to the difference
    assert c.ci_low == pytest.approx(-1.0)
    assert c.ci_high == pytest.approx(2 * (1 - 0.025 ** (1 / 3)) - 1)
    # eight seeds: p = 2 * 0.5^8, interval excludes 0
    c8 = compare([0.0] * 8, [1.0] * 8, "lower")
    assert c8.p_value == pytest.approx(2 * 0.5**8) and c8.verdict == "supported"
    assert c8.ci_high < 0
    # no discordant pair: nothing to test
    assert exact_binary([1, 0, 1], [1, 0, 1])[1:4] == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="0 or 1"):
        exact_binary([0.5, 1], [0, 1])


def test_deterministic_quantities_are_computed_not_supported():
    c = compare([120.0, 120.0, 120.0], [300.0, 300.0, 300.0], "lower")
    assert (c.kind, c.verdict, c.diff) == ("computed", "computed", -180.0)
    assert compare([120.0] * 3, [300.0] * 3, "higher").verdict == "contradicted"
    assert compare([5.0] * 3, [5.0] * 3, "higher").verdict == "inconclusive"
    # a declared computed metric is computed even with one seed
    assert compare([1.0], [2.0], "lower", computed=True).verdict == "computed"
    assert "computed" in RULE and "paired" in RULE


def test_failed_runs_take_the_worst_value():
    t, b = impute_failures([0.9, None, 0.8], [0.7, 0.6, 0.5], [False, True, False],
                           [False] * 3, "higher")
    assert t == [0.9, 0.5, 0.8] and b == [0.7, 0.6, 0.5]
    # for a lower-is-better claim the worst is the maximum
    t, _ = impute_failures([None, 1.0], [2.0, 3.0], [True, False], [False, False], "lower")
    assert t == [3.0, 1.0]
    c = compare([0.9, None, 0.8], [0.7, 0.6, 0.5], "higher",
                failed_treatment=[False, True, False])
    assert c.failed_treatment == 1 and c.n_pairs == 3
    assert c.values_treatment == [0.9, 0.5, 0.8]
    # without the failure flag the missing seed is dropped, not imputed
    assert compare([0.9, None, 0.8], [0.7, 0.6, 0.5], "higher").n_pairs == 2


def test_insufficient_and_bad_arguments():
    c = compare([0.9], [0.8], "higher")
    assert c.verdict == "insufficient" and math.isnan(c.ci_low)
    with pytest.raises(ValueError, match="direction"):
        compare([1, 2], [1, 2], "up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aligned by seed"):
        compare([1, 2, 3], [1, 2], "higher")
    with pytest.raises(ValueError, match="at least 2"):
        welch_interval([1], [1, 2])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_interval([1], [2])


def test_minimum_detectable_effect_has_80_percent_power_by_simulation():
    sd, n = 0.02, 5
    mde = min_detectable_effect(sd, n)
    assert paired_power(mde, sd, n) == pytest.approx(0.8, abs=1e-6)
    # Monte-Carlo: paired t-tests on simulated differences with mean = MDE reject 80% of the time
    rng = np.random.default_rng(0)
    d = rng.normal(mde, sd, size=(200_000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    crit = stats.t.ppf(0.975, n - 1)
    assert np.mean(np.abs(t) > crit) == pytest.approx(0.8, abs=0.005)
    # large n: the normal approximation (z_0.975 + z_0.8) sd / sqrt(n)
    big = min_detectable_effect(1.0, 400)
    approx = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / math.sqrt(400)
    assert big == pytest.approx(approx, rel=0.01)
    assert compare(T, B, "higher").mde == pytest.approx(
        min_detectable_effect(float(np.std(np.subtract(T, B), ddof=1)), len(T)))


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm([0.01, 0.04, 0.03, math.nan])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, 0.04, 0.03, math.nan])[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_verdict("supported", 0.06) == "inconclusive"
    assert holm_verdict("supported", 0.01) == "supported"
    assert holm_verdict("computed", math.nan) == "computed"


def test_hedges_g_and_mean_ci_known_values():
    # diff -3, pooled sd 1, correction 1 - 3 / (4 * 6 - 9) = 0.8
    assert hedges_g([1, 2, 3], [4, 5, 6]) == pytest.approx(-2.4)
    m, half = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and half == pytest.approx(4.302652729911275 / math.sqrt(3))
