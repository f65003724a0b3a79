"""The lab's one verdict rule: a confidence interval of the difference between two arms.

Every comparison in every experiment goes through :func:`compare`, so the rule is written once:

* ``diff = mean(treatment) - mean(baseline)`` over seeds (finite values only);
* a 95% **Welch t-interval** of that difference (unequal variances; Welch 1947, with the
  Welch–Satterthwaite degrees of freedom). Arms are treated as independent samples: seeds are
  not paired, so an arm that lost a seed to a crash still counts;
* the claim says which sign the difference should have (``direction="higher"`` or ``"lower"``);
* **supported** if the interval excludes 0 on the claimed side, **contradicted** if it excludes
  0 on the other side, **inconclusive** otherwise; **insufficient** when an arm has fewer than
  two finite values (no variance estimate, e.g. the one-seed smoke profile);
* the effect size is Hedges' g (Cohen's d with the pooled standard deviation, small-sample
  corrected; Hedges 1981), signed like ``diff``.

When both arms have zero spread the interval collapses to the point ``diff``: a difference that
every seed reproduces exactly is taken at face value (e.g. 3/3 runs diverge versus 0/3).
No correction for multiple comparisons is applied; the report lists every comparison made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Direction = Literal["higher", "lower"]
Verdict = Literal["supported", "contradicted", "inconclusive", "insufficient"]
VERDICTS: tuple[str, ...] = ("supported", "contradicted", "inconclusive", "insufficient")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare` (all numbers are treatment − baseline)."""

    verdict: Verdict
    diff: float
    ci_low: float
    ci_high: float
    effect_size: float
    n_treatment: int
    n_baseline: int
    mean_treatment: float
    mean_baseline: float
    direction: Direction
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def welch_interval(
    treatment: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Mean difference and its Welch t-interval.

    Args:
        treatment: values of the treatment arm (at least 2).
        baseline: values of the baseline arm (at least 2).
        confidence: two-sided coverage, in (0, 1).

    Returns:
        (diff, low, high) with ``diff = mean(treatment) - mean(baseline)``.
    """
    from scipy import stats as sps

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
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
    diff = float(t.mean() - b.mean())
    pooled = math.sqrt(((nt - 1) * t.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (nt + nb - 2))
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    correction = 1 - 3 / (4 * (nt + nb) - 9)
    return diff / pooled * correction


def decide(low: float, high: float, direction: Direction) -> Verdict:
    """The verdict for an interval of treatment − baseline and the claimed direction."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}.")
    if low > 0:
        return "supported" if direction == "higher" else "contradicted"
    if high < 0:
        return "supported" if direction == "lower" else "contradicted"
    return "inconclusive"


def compare(
    treatment: Sequence[float | None],
    baseline: Sequence[float | None],
    direction: Direction,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Applies the lab's verdict rule (see the module docstring) to two arms' per-seed values.

    Args:
        treatment: one value per seed of the arm the claim is about; None/NaN/Inf are dropped.
        baseline: one value per seed of the arm it is compared with.
        direction: ``"higher"`` if the claim says the treatment's value should be larger.
        confidence: two-sided coverage of the interval.

    Returns:
        A :class:`Comparison`.
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}.")
    t, b = _finite(treatment), _finite(baseline)
    mt = float(t.mean()) if len(t) else math.nan
    mb = float(b.mean()) if len(b) else math.nan
    if len(t) < 2 or len(b) < 2:
        diff = mt - mb
        return Comparison("insufficient", diff, math.nan, math.nan, math.nan, len(t), len(b),
                          mt, mb, direction, confidence)
    diff, low, high = welch_interval(t, b, confidence)
    return Comparison(decide(low, high, direction), diff, low, high, hedges_g(t, b), len(t),
                      len(b), mt, mb, direction, confidence)


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


def combine(verdicts: Sequence[str]) -> str:
    """One word for several comparisons of an experiment: all equal → that word, else "mixed"."""
    vs = set(verdicts)
    if not vs:
        return "insufficient"
    return vs.pop() if len(vs) == 1 else "mixed"


__all__ = [
    "CONFIDENCE",
    "VERDICTS",
    "Comparison",
    "combine",
    "compare",
    "decide",
    "hedges_g",
    "mean_ci",
    "welch_interval",
]
