"""Recomputes every verdict of a lab run from the stored per-seed values, independently.

Reads ``OUT/results.json`` (written by ``dltricks lab run`` / ``dltricks lab report``) and, for
every experiment, redoes from the stored units and config alone — with numpy and scipy, without
importing ``dltricks`` — the learning-rate selection on validation values, the worst-value rule
for failed runs, the choice of test (computed, exact McNemar for binaries, paired t), each
comparison's interval and verdict, the premises, the experiment's verdict and every tip's
verdict. Prints the disagreements and exits 1 if there is any, 0 otherwise.

Usage::

    python tools/recompute_verdicts.py OUT            # or OUT/results.json

The rule it checks is the one docs/lab.md states; this file is written from that text, not from
``dltricks.lab.stats`` (McNemar 1947; Clopper & Pearson 1934; Student 1908).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

COMPUTED = {"params", "num_params", "macs", "flops", "size_bytes", "model_bytes", "int8_bytes",
            "fp32_bytes", "receptive_field", "rf"}


def finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def val_of(unit: dict[str, Any], metric: str) -> float | None:
    v = unit.get("metrics", {}).get(metric)
    if finite(v):
        return float(v)
    col = 2 if metric == "val_loss" else 1
    for row in reversed(unit.get("curves", {}).get("val", [])):
        if len(row) > col and finite(row[col]):
            return float(row[col])
    return None


def chosen_arms(config: dict[str, Any], units: list[dict[str, Any]]) -> dict[str, str]:
    """Base arm -> the run arm it is read on (best mean validation value over its grid)."""
    metric = config.get("lr_select", "val_accuracy")
    best_is_max = config.get("lr_select_mode", "max") == "max"
    out = {}
    for arm in config["arms"]:
        out.setdefault(arm.get("base", arm["name"]), arm["name"])
    for base in config.get("lr_grid") or {}:
        names = [a["name"] for a in config["arms"] if a.get("base") == base]
        raw = {n: [(val_of(u, metric), u.get("metrics", {}).get("diverged") == 1.0)
                   for u in units if u["arm"] == n] for n in names}
        seen = [v for rows in raw.values() for v, _ in rows if v is not None]
        if not seen:
            out[base] = names[0]
            continue
        worst = min(seen) if best_is_max else max(seen)
        means = {}
        for n, rows in raw.items():
            vals = [worst if failed else v for v, failed in rows]
            vals = [v for v in vals if v is not None]
            if vals:
                means[n] = sum(vals) / len(vals)
        ordered = [n for n in names if n in means]
        pick = ordered[0]
        for n in ordered[1:]:
            if (means[n] > means[pick]) if best_is_max else (means[n] < means[pick]):
                pick = n
        out[base] = pick
    return out


def verdict_of(low: float, high: float, higher: bool) -> str:
    if low > 0:
        return "supported" if higher else "contradicted"
    if high < 0:
        return "contradicted" if higher else "supported"
    return "inconclusive"


def comparison(claim: dict[str, Any], t_units: dict[int, dict], b_units: dict[int, dict],
               seeds: list[int]) -> tuple[str, float]:
    """(verdict, difference) of one claim from the two arms' units keyed by seed."""
    metric, higher = claim["metric"], claim["direction"] == "higher"

    def column(units: dict[int, dict]) -> tuple[list[Any], list[bool]]:
        vals = [units[s]["metrics"].get(metric) if s in units else None for s in seeds]
        failed = [s in units and units[s]["metrics"].get("diverged") == 1.0 for s in seeds]
        return vals, failed

    tv, tf = column(t_units)
    bv, bf = column(b_units)
    pool = [v for v in tv + bv if finite(v)]
    if pool:
        worst = min(pool) if higher else max(pool)

        def fill(vals: list[Any], failed: list[bool]) -> list[Any]:
            out = []
            for v, f in zip(vals, failed, strict=True):
                if f:
                    v = worst if not finite(v) else (min(v, worst) if higher else max(v, worst))
                out.append(v)
            return out

        tv, bv = fill(tv, tf), fill(bv, bf)
    pairs = [(float(a), float(b)) for a, b in zip(tv, bv, strict=True) if finite(a) and finite(b)]
    if not pairs:
        return "insufficient", math.nan
    t = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    constant = len(pairs) >= 2 and len(set(t.tolist())) == 1 and len(set(b.tolist())) == 1
    binary = set(t.tolist()) | set(b.tolist()) <= {0.0, 1.0}
    if claim.get("computed") or metric in COMPUTED or (constant and not binary):
        d = float(np.mean(t - b))
        if d == 0:
            return "inconclusive", d
        return ("computed" if (d > 0) == higher else "contradicted"), d
    if len(pairs) < 2:
        return "insufficient", float(t.mean() - b.mean())
    if binary:
        up = int(np.sum((t == 1) & (b == 0)))
        down = int(np.sum((t == 0) & (b == 1)))
        n = len(pairs)
        if up + down == 0:
            return "inconclusive", 0.0
        # Clopper-Pearson interval of up / (up + down) from the beta distribution
        k, m = up, up + down
        lo = 0.0 if k == 0 else stats.beta.ppf(0.025, k, m - k + 1)
        hi = 1.0 if k == m else stats.beta.ppf(0.975, k + 1, m - k)
        scale = m / n
        return verdict_of(scale * (2 * lo - 1), scale * (2 * hi - 1), higher), (up - down) / n
    res = stats.ttest_rel(t, b)
    d = float(np.mean(t - b))
    if np.std(t - b) == 0:
        return verdict_of(d, d, higher), d
    ci = res.confidence_interval(0.95)
    return verdict_of(float(ci.low), float(ci.high), higher), d


def premise_holds(p: dict[str, Any], arm_units: dict[str, dict[int, dict]],
                  seeds: list[int]) -> bool | None:
    lhs = [arm_units[p["arm"]].get(s, {}).get("metrics", {}).get(p["metric"]) for s in seeds]
    if p.get("value") is not None:
        rhs = [p["value"]] * len(seeds)
    else:
        other = arm_units[p.get("than_arm") or p["arm"]]
        rhs = [other.get(s, {}).get("metrics", {}).get(p.get("than_metric") or p["metric"])
               for s in seeds]
    diffs = [a - b for a, b in zip(lhs, rhs, strict=True) if finite(a) and finite(b)]
    if not diffs:
        return None
    mean = sum(diffs) / len(diffs)
    return mean > 0 if p["op"] == ">" else mean < 0


def combine(verdicts: list[str]) -> str:
    if not verdicts:
        return "not measured"
    live = [v for v in verdicts if v != "premise not met"]
    if not live:
        return "premise not met"
    sup = live.count("supported")
    comp = live.count("computed")
    con = live.count("contradicted")
    other = len(live) - sup - comp - con
    if (sup or comp) and con:
        return "conflicting"
    if con:
        return "contradicted"
    if sup or comp:
        return "partly supported" if other else ("supported" if sup else "computed")
    return "inconclusive" if "inconclusive" in live else "insufficient"


def recompute(summary: dict[str, Any]) -> list[str]:
    """Disagreements between the stored verdicts and the recomputed ones (empty: all agree)."""
    problems: list[str] = []
    by_tip: dict[str, list[str]] = {}
    for r in summary["experiments"]:
        config, stored = r.get("config"), r.get("analysis") or {}
        if not config:
            continue
        seeds = list(config["seeds"])
        units = [u for u in r.get("units", {}).values() if u.get("status") == "ok"]
        errors = [u for u in r.get("units", {}).values() if u.get("status") == "error"]
        chosen = chosen_arms(config, units)
        arm_units = {base: {u["seed"]: u for u in units if u["arm"] == run}
                     for base, run in chosen.items()}
        primary = []
        for i, claim in enumerate(config["claims"]):
            verdict, diff = comparison(claim, arm_units[claim["treatment"]],
                                       arm_units[claim["baseline"]], seeds)
            got = stored.get("comparisons", [])[i] if i < len(stored.get("comparisons", [])) \
                else {}
            if got.get("verdict") != verdict:
                problems.append(f"{r['id']}: {claim['treatment']} vs {claim['baseline']} on "
                                f"{claim['metric']}: stored {got.get('verdict')!r}, recomputed "
                                f"{verdict!r} (difference {diff:.6g})")
            if claim.get("primary", True):
                primary.append((claim, verdict))
        holds = [premise_holds(p, arm_units, seeds) for p in config.get("premises") or []]
        premise_failed = bool(holds) and not all(h is True for h in holds)
        if errors:
            exp_verdict = "error"
        elif premise_failed:
            exp_verdict = "premise not met"
        else:
            exp_verdict = combine([v for _, v in primary])
            exp_verdict = "insufficient" if exp_verdict == "not measured" else exp_verdict
        if stored.get("verdict") != exp_verdict:
            problems.append(f"{r['id']}: stored verdict {stored.get('verdict')!r}, recomputed "
                            f"{exp_verdict!r}")
        if exp_verdict == "error":
            continue
        for claim, verdict in primary:
            for tip in claim.get("tips") or r.get("tips", []):
                by_tip.setdefault(tip, []).append("premise not met" if premise_failed
                                                  else verdict)
    for row in summary.get("tips", []):
        want = combine(by_tip.get(row["tip"], []))
        if row["verdict"] != want:
            problems.append(f"tip {row['tip']}: stored {row['verdict']!r}, recomputed {want!r}")
    missing = set(by_tip) - {row["tip"] for row in summary.get("tips", [])}
    problems += [f"tip {t}: has comparisons but no stored verdict" for t in sorted(missing)]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: recompute_verdicts.py OUT|OUT/results.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        print(f"{path} does not exist; give a lab run folder or its results.json.",
              file=sys.stderr)
        return 2
    summary = json.loads(path.read_text())
    problems = recompute(summary)
    n_comp = sum(len((r.get("config") or {}).get("claims", [])) for r in summary["experiments"])
    for p in problems:
        print(p)
    print(f"{len(summary['experiments'])} experiments, {n_comp} comparisons, "
          f"{len(summary.get('tips', []))} tips: {len(problems)} disagreements")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
