"""The lab's verdict rule: paired intervals on per-seed differences, exact tests, computed facts.

Arms of one seed share the data split and the initial seed, so every comparison is **paired by
seed**. :func:`compare` picks the analysis from the data and the claim:

* **computed**: the metric is declared deterministic (parameters, MACs, sizes; see
  :data:`COMPUTED_METRICS`) or has zero spread over seeds in both arms and is not binary. The
  difference is exact arithmetic, not a sample: it is reported as ``"computed"`` when it has the
  claimed sign (``"contradicted"`` when it has the other, ``"inconclusive"`` when it is 0) and is
  never called statistical support.
* **exact (binary)**: every value is 0 or 1 (diverged, solved). Paired binaries get the exact
  McNemar test (a two-sided binomial test on the discordant pairs; McNemar 1947) and an exact
  Clopper–Pearson interval of the difference in proportions conditional on the discordant pairs;
  Fisher's exact test on the 2x2 table of the unpaired counts is reported beside.
* **paired t**: otherwise, the 95% t-interval of the mean of the per-seed differences
  ``d_s = treatment_s − baseline_s`` (Student 1908), with ``n − 1`` degrees of freedom.

In every case the verdict is **supported** if the interval excludes 0 on the claimed side,
**contradicted** if it excludes 0 on the other side, **inconclusive** otherwise; **insufficient**
below two pairs (the one-seed smoke profile).

Failed runs are not dropped: a run marked as failed (diverged) takes the **worst value** of the
metric seen in the comparison (the minimum for a claim that the treatment is higher, the
maximum for one that it is lower), and the comparison counts the failures of each arm.

Beside the rule: the **Welch** interval of the unpaired difference (Welch 1947) and its verdict,
the paired standardized effect ``d_z = mean(d) / sd(d)``, Hedges' g of the unpaired arms
(Hedges 1981), and the **minimum detectable effect** of the paired t-test at 80% power for the
number of pairs and the observed sd of the differences (Cohen 1988; the power is computed with
the noncentral t distribution). :func:`holm` adjusts the p-values of a set of comparisons
(Holm 1979); the report shows the adjusted verdicts beside the raw ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

Direction = Literal["higher", "lower"]
Verdict = Literal["supported", "contradicted", "inconclusive", "insufficient", "computed"]
Kind = Literal["paired", "exact", "computed", "none"]
VERDICTS: tuple[str, ...] = ("supported", "contradicted", "inconclusive", "insufficient",
                             "computed")
CONFIDENCE = 0.95
POWER = 0.8

#: Metrics that are arithmetic on the model, not samples (reported as "computed").
COMPUTED_METRICS: frozenset[str] = frozenset({
    "params", "num_params", "macs", "flops", "size_bytes", "model_bytes", "int8_bytes",
    "fp32_bytes", "receptive_field", "rf",
})

RULE = ("paired by seed: 95% t-interval of the mean per-seed difference (treatment - baseline); "
        "binary outcomes: exact McNemar test with a Clopper-Pearson interval; deterministic "
        "quantities: exact (computed), never statistical support; supported if the interval "
        "excludes 0 on the claimed side, contradicted if it excludes 0 on the other side, "
        "inconclusive otherwise; failed runs take the worst value of the metric "
        "(dltricks.lab.stats)")


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare` (all differences are treatment − baseline).

    Attributes:
        verdict: by the rule of the module docstring.
        kind: ``"paired"`` (t on differences), ``"exact"`` (binary), ``"computed"``, ``"none"``
            (fewer than two pairs).
        diff: mean of the per-seed differences (difference in proportions for binaries).
        ci_low, ci_high: the interval the verdict rests on (NaN when there is none).
        p_value: two-sided p-value of the test behind the verdict (NaN for computed).
        n_pairs: seeds with a value in both arms (after failures took the worst value).
        values_treatment, values_baseline: the paired per-seed values the rule used.
        failed_treatment, failed_baseline: runs of each arm that failed and took the worst value.
        sd_diff: standard deviation of the per-seed differences.
        effect_size: paired standardized effect d_z (``±inf`` for zero spread).
        mde: smallest |mean difference| the paired t-test detects with 80% power at this n and
            sd_diff (NaN for binary and computed comparisons).
        welch_low, welch_high, welch_verdict: the unpaired Welch interval and its verdict.
        hedges_g: unpaired standardized difference.
        p_fisher: Fisher's exact test of the unpaired 2x2 table (binary only).
    """

    verdict: Verdict
    kind: Kind
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_pairs: int
    mean_treatment: float
    mean_baseline: float
    direction: Direction
    values_treatment: list[float] = field(default_factory=list)
    values_baseline: list[float] = field(default_factory=list)
    failed_treatment: int = 0
    failed_baseline: int = 0
    sd_diff: float = math.nan
    effect_size: float = math.nan
    mde: float = math.nan
    welch_low: float = math.nan
    welch_high: float = math.nan
    welch_verdict: str = "n/a"
    hedges_g: float = math.nan
    p_fisher: float = math.nan
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def _is_finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _check(direction: str, confidence: float) -> None:
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")


def decide(low: float, high: float, direction: Direction) -> Verdict:
    """The verdict for an interval of treatment − baseline and the claimed direction."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}.")
    if low > 0:
        return "supported" if direction == "higher" else "contradicted"
    if high < 0:
        return "supported" if direction == "lower" else "contradicted"
    return "inconclusive"


def paired_interval(treatment: Sequence[float], baseline: Sequence[float],
                    confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """Mean of the per-seed differences, its t-interval and the two-sided p-value.

    Args:
        treatment: one value per seed (at least 2), aligned with ``baseline``.
        baseline: one value per seed.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        (mean difference, low, high, p). Zero spread gives the point interval and p = 0 for a
        nonzero difference (1 for none).
    """
    from scipy import stats as sps

    _check("higher", confidence)
    t, b = np.asarray(treatment, float), np.asarray(baseline, float)
    if t.shape != b.shape:
        raise ValueError(f"Paired values need equal lengths, got {len(t)} and {len(b)}.")
    if len(t) < 2:
        raise ValueError(f"A paired interval needs at least 2 pairs, got {len(t)}.")
    d = t - b
    mean, n = float(d.mean()), len(d)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return mean, mean, mean, (1.0 if mean == 0 else 0.0)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * sps.t.sf(abs(mean) / se, n - 1))
    return mean, mean - half, mean + half, p


def welch_interval(treatment: Sequence[float], baseline: Sequence[float],
                   confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean difference of two independent samples and its Welch t-interval.

    Args:
        treatment: values of the treatment arm (at least 2).
        baseline: values of the baseline arm (at least 2).
        confidence: two-sided coverage, in (0, 1).

    Returns:
        (diff, low, high) with ``diff = mean(treatment) - mean(baseline)``.
    """
    from scipy import stats as sps

    _check("higher", confidence)
    t, b = np.asarray(treatment, float), np.asarray(baseline, float)
    if len(t) < 2 or len(b) < 2:
        raise ValueError(
            f"A t-interval needs at least 2 values per arm, got {len(t)} and {len(b)}."
        )
    diff = float(t.mean() - b.mean())
    vt, vb = t.var(ddof=1) / len(t), b.var(ddof=1) / len(b)
    se2 = vt + vb
    if se2 == 0:
        return diff, diff, diff
    df = se2**2 / (vt**2 / (len(t) - 1) + vb**2 / (len(b) - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    return diff, diff - half, diff + half


def hedges_g(treatment: Sequence[float], baseline: Sequence[float]) -> float:
    """Standardised mean difference with the pooled SD and the small-sample correction.

    Zero spread in both arms gives ``+-inf`` for a nonzero difference and 0 for none.
    """
    t, b = np.asarray(treatment, float), np.asarray(baseline, float)
    nt, nb = len(t), len(b)
    if nt < 2 or nb < 2:
        return math.nan
    diff = float(t.mean() - b.mean())
    pooled = math.sqrt(((nt - 1) * t.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (nt + nb - 2))
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    correction = 1 - 3 / (4 * (nt + nb) - 9)
    return diff / pooled * correction


def paired_power(effect: float, sd: float, n: int, alpha: float = 1 - CONFIDENCE) -> float:
    """Power of the two-sided paired t-test to detect a true mean difference ``effect``.

    Uses the noncentral t distribution with ``n − 1`` degrees of freedom and noncentrality
    ``effect / sd * sqrt(n)``.
    """
    from scipy import stats as sps

    if n < 2 or not sd > 0:
        raise ValueError(f"Power needs n >= 2 pairs and sd > 0, got n={n}, sd={sd}.")
    df = n - 1
    crit = float(sps.t.ppf(1 - alpha / 2, df))
    nc = abs(effect) / sd * math.sqrt(n)
    upper = float(sps.nct.sf(crit, df, nc))
    lower = float(sps.nct.cdf(-crit, df, nc))  # the wrong-sign tail: tiny, NaN in scipy at times
    return upper + (lower if math.isfinite(lower) else 0.0)


def min_detectable_effect(sd: float, n: int, power: float = POWER,
                          alpha: float = 1 - CONFIDENCE) -> float:
    """Smallest true mean difference the two-sided paired t-test detects with ``power``.

    Args:
        sd: standard deviation of the per-seed differences (> 0).
        n: number of pairs (>= 2).
        power: target power, in (alpha, 1).
        alpha: two-sided significance level.

    Returns:
        The minimum detectable |mean difference|, in the metric's units.
    """
    from scipy.optimize import brentq

    if not alpha < power < 1:
        raise ValueError(f"power must be in ({alpha}, 1), got {power}.")
    hi = sd
    while paired_power(hi, sd, n, alpha) < power:
        hi *= 2
    return float(brentq(lambda e: paired_power(e, sd, n, alpha) - power, 0.0, hi, xtol=1e-12,
                        rtol=1e-10))


def exact_binary(treatment: Sequence[float], baseline: Sequence[float],
                 confidence: float = CONFIDENCE) -> tuple[float, float, float, float, float]:
    """Paired binary outcomes: difference in proportions, exact interval, McNemar and Fisher p.

    Args:
        treatment: 0/1 per seed, aligned with ``baseline``.
        baseline: 0/1 per seed.
        confidence: coverage of the Clopper–Pearson interval.

    Returns:
        (diff, low, high, p_mcnemar, p_fisher). With ``b`` pairs (1, 0) and ``c`` pairs (0, 1)
        out of ``n``, ``diff = (b − c) / n``; the interval maps the Clopper–Pearson interval of
        ``b / (b + c)`` to ``(b + c) / n · (2p − 1)``; no discordant pair gives [0, 0], p = 1.
    """
    from scipy import stats as sps

    t, b = np.asarray(treatment, float), np.asarray(baseline, float)
    if t.shape != b.shape or len(t) == 0:
        raise ValueError(f"Paired binaries need equal, nonzero lengths, got {len(t)}, {len(b)}.")
    if not (np.isin(t, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
        raise ValueError("exact_binary needs values that are all 0 or 1.")
    n = len(t)
    n10 = int(((t == 1) & (b == 0)).sum())
    n01 = int(((t == 0) & (b == 1)).sum())
    table = [[int(t.sum()), n - int(t.sum())], [int(b.sum()), n - int(b.sum())]]
    p_fisher = float(sps.fisher_exact(table).pvalue)
    disc = n10 + n01
    diff = (n10 - n01) / n
    if disc == 0:
        return diff, 0.0, 0.0, 1.0, p_fisher
    test = sps.binomtest(n10, disc, 0.5)
    ci = test.proportion_ci(confidence_level=confidence, method="exact")
    scale = disc / n
    return diff, scale * (2 * ci.low - 1), scale * (2 * ci.high - 1), float(test.pvalue), p_fisher


def impute_failures(treatment: Sequence[float | None], baseline: Sequence[float | None],
                    failed_treatment: Sequence[bool], failed_baseline: Sequence[bool],
                    direction: Direction) -> tuple[list[float | None], list[float | None]]:
    """Per-seed values where a failed run takes the worst finite value seen in both arms.

    "Worst" is the minimum when the claim says the treatment is ``"higher"`` and the maximum
    when it says ``"lower"`` (the claim's direction is the metric's good side). A failed run
    keeps its own value if it has one that is worse still.
    """
    pool = [v for v in (*treatment, *baseline) if _is_finite(v)]
    if not pool:
        return list(treatment), list(baseline)
    worst = min(pool) if direction == "higher" else max(pool)

    def fill(vals: Sequence[float | None], failed: Sequence[bool]) -> list[float | None]:
        out: list[float | None] = []
        for v, f in zip(vals, failed, strict=True):
            if f:
                if _is_finite(v):
                    v = min(v, worst) if direction == "higher" else max(v, worst)
                else:
                    v = worst
            out.append(v)
        return out

    return fill(treatment, failed_treatment), fill(baseline, failed_baseline)


def compare(
    treatment: Sequence[float | None],
    baseline: Sequence[float | None],
    direction: Direction,
    confidence: float = CONFIDENCE,
    *,
    failed_treatment: Sequence[bool] | None = None,
    failed_baseline: Sequence[bool] | None = None,
    computed: bool = False,
) -> Comparison:
    """Applies the lab's verdict rule (see the module docstring) to two arms' per-seed values.

    Args:
        treatment: one value per seed of the arm the claim is about (None/NaN/Inf: missing).
        baseline: one value per seed of the arm it is compared with, aligned by seed.
        direction: ``"higher"`` if the claim says the treatment's value should be larger.
        confidence: two-sided coverage of the interval.
        failed_treatment, failed_baseline: per seed, whether the run failed (diverged); a failed
            run takes the worst value of the metric instead of being dropped.
        computed: the metric is deterministic (exact arithmetic, not a sample).

    Returns:
        A :class:`Comparison`.
    """
    _check(direction, confidence)
    if len(treatment) != len(baseline):
        raise ValueError(f"Values must be aligned by seed, got {len(treatment)} treatment and "
                         f"{len(baseline)} baseline values.")
    ft = list(failed_treatment) if failed_treatment is not None else [False] * len(treatment)
    fb = list(failed_baseline) if failed_baseline is not None else [False] * len(baseline)
    if len(ft) != len(treatment) or len(fb) != len(baseline):
        raise ValueError("failed_treatment/failed_baseline must have one flag per seed.")
    t_all, b_all = impute_failures(treatment, baseline, ft, fb, direction)
    pairs = [(t, b) for t, b in zip(t_all, b_all, strict=True) if _is_finite(t) and _is_finite(b)]
    tv = [float(p[0]) for p in pairs]
    bv = [float(p[1]) for p in pairs]
    ta, ba = _finite(t_all), _finite(b_all)
    mt = float(ta.mean()) if len(ta) else math.nan
    mb = float(ba.mean()) if len(ba) else math.nan
    common = {"mean_treatment": mt, "mean_baseline": mb, "direction": direction,
              "values_treatment": tv, "values_baseline": bv, "failed_treatment": sum(ft),
              "failed_baseline": sum(fb), "confidence": confidence}
    n = len(pairs)
    welch: dict[str, object] = {}
    binary = n > 0 and all(v in (0.0, 1.0) for v in (*tv, *bv))
    constant = n >= 2 and len(set(tv)) == 1 and len(set(bv)) == 1
    if len(ta) >= 2 and len(ba) >= 2 and not (binary or constant or computed):
        _, wl, wh = welch_interval(ta, ba, confidence)
        welch = {"welch_low": wl, "welch_high": wh, "welch_verdict": decide(wl, wh, direction),
                 "hedges_g": hedges_g(ta, ba)}
    if n > 0 and (computed or (constant and not binary)):
        diff = tv[0] - bv[0] if constant else float(np.mean(np.subtract(tv, bv)))
        verdict: Verdict = "inconclusive" if diff == 0 else (
            "computed" if (diff > 0) == (direction == "higher") else "contradicted")
        return Comparison(verdict, "computed", diff, diff, diff, math.nan, n, **common,
                          sd_diff=float(np.std(np.subtract(tv, bv), ddof=1)) if n > 1 else 0.0,
                          **welch)
    if n < 2:
        return Comparison("insufficient", "none", mt - mb, math.nan, math.nan, math.nan, n,
                          **common, **welch)
    if binary:
        diff, low, high, p, p_f = exact_binary(tv, bv, confidence)
        return Comparison(decide(low, high, direction), "exact", diff, low, high, p, n,
                          **common, p_fisher=p_f, **welch)
    diff, low, high, p = paired_interval(tv, bv, confidence)
    sd = float(np.std(np.subtract(tv, bv), ddof=1))
    mde = min_detectable_effect(sd, n, alpha=1 - confidence) if sd > 0 else 0.0
    dz = diff / sd if sd > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return Comparison(decide(low, high, direction), "paired", diff, low, high, p, n, **common,
                      sd_diff=sd, effect_size=dz, mde=mde, **welch)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979); NaN entries stay NaN.

    The adjusted p of the k-th smallest of m p-values is ``max_{j<=k} min(1, (m − j + 1) p_(j))``.
    """
    idx = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    out = [math.nan] * len(p_values)
    order = sorted(idx, key=lambda i: p_values[i])
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def holm_verdict(verdict: str, p_adjusted: float, alpha: float = 1 - CONFIDENCE) -> str:
    """A raw verdict after Holm: support or contradiction stands only if ``p_adjusted < alpha``."""
    if verdict in ("supported", "contradicted") and math.isfinite(p_adjusted):
        return verdict if p_adjusted < alpha else "inconclusive"
    return verdict


def mean_ci(values: Sequence[float | None], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean of the finite values and the half-width of its t-interval (NaN below 2 values)."""
    from scipy import stats as sps

    v = _finite(values)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) < 2:
        return float(v.mean()), math.nan
    half = float(sps.t.ppf(0.5 + confidence / 2, len(v) - 1)) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), half


__all__ = [
    "COMPUTED_METRICS",
    "CONFIDENCE",
    "POWER",
    "RULE",
    "VERDICTS",
    "Comparison",
    "compare",
    "decide",
    "exact_binary",
    "hedges_g",
    "holm",
    "holm_verdict",
    "impute_failures",
    "mean_ci",
    "min_detectable_effect",
    "paired_interval",
    "paired_power",
    "welch_interval",
]
