"""Verdicts: per-arm statistics, learning-rate selection, premises and the verdict of every
comparison, experiment and tip, from stored results alone.

Kept apart from the runner so that ``dltricks lab report`` (and the independent script
``tools/recompute_verdicts.py``) can recompute every verdict from results files without
running anything.

**Combining comparisons** (an experiment's primary comparisons, or every primary comparison
that names a tip), by :func:`combine_verdicts`:

============================================  =====================
comparisons                                    verdict
============================================  =====================
none                                           not measured
all from experiments whose premise failed      premise not met
support (or computed) and contradiction        conflicting
contradiction, no support                      contradicted
support, every other one supported/computed    supported
support beside inconclusive ones               partly supported
computed only                                  computed
computed beside inconclusive ones              partly supported
inconclusive (and insufficient) only           inconclusive
insufficient only (fewer than 2 seeds)         insufficient
============================================  =====================

Comparisons from an experiment whose premise failed are left out of a tip's combination when
the tip has other evidence (and listed beside it); an experiment with a crashed run is "error".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dltricks.lab.stats import COMPUTED_METRICS, RULE, compare, holm, holm_verdict

TIP_VERDICTS: tuple[str, ...] = (
    "supported", "partly supported", "computed", "inconclusive", "conflicting", "contradicted",
    "premise not met", "insufficient", "not measured",
)


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """One verdict for several comparisons (the table of the module docstring)."""
    vs = list(verdicts)
    if not vs:
        return "not measured"
    live = [v for v in vs if v != "premise not met"]
    if not live:
        return "premise not met"
    s, k = live.count("supported"), live.count("computed")
    c = live.count("contradicted")
    rest = len(live) - s - k - c
    if (s or k) and c:
        return "conflicting"
    if c:
        return "contradicted"
    if s or k:
        if rest:
            return "partly supported"
        return "supported" if s else "computed"
    if live.count("inconclusive"):
        return "inconclusive"
    return "insufficient"


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _as_dict(result: Any) -> Mapping[str, Any]:
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="python")
    return result


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def val_value(unit: Mapping[str, Any], metric: str) -> float | None:
    """The validation metric that selects a learning rate, from one stored unit.

    Read from the unit's metrics (``val_accuracy``, ``val_loss``, ...: the last validation
    evaluation, recorded by the runner); units stored without it fall back to the last point
    of the validation curve (``[step, score, loss]``: score for ``val_accuracy``/``val_score``,
    loss for ``val_loss``).
    """
    v = (unit.get("metrics") or {}).get(metric)
    if _finite(v):
        return float(v)
    curve = (unit.get("curves") or {}).get("val") or []
    col = 2 if metric == "val_loss" else 1
    for row in reversed(curve):
        if len(row) > col and _finite(row[col]):
            return float(row[col])
    return None


def _arm_stats(units: Sequence[Mapping[str, Any]], seeds: Sequence[int],
               metric_names: Sequence[str], label: str) -> dict[str, Any]:
    by_seed = {u["seed"]: u for u in units}
    per_metric = {}
    for m in metric_names:
        vals = [(by_seed[s].get("metrics") or {}).get(m) if s in by_seed else None
                for s in seeds]
        finite = [float(v) for v in vals if _finite(v)]
        per_metric[m] = {
            "values": vals,
            "mean": float(np.mean(finite)) if finite else None,
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
            "n": len(finite),
        }
    failed = [s for s in seeds if s in by_seed
              and (by_seed[s].get("metrics") or {}).get("diverged") == 1.0]
    return {"label": label, "n_ok": len(units), "n_failed": len(failed), "failed_seeds": failed,
            "metrics": per_metric,
            "seconds": float(sum(u.get("seconds", 0.0) or 0.0 for u in units))}


def select_learning_rates(config: Mapping[str, Any], units: Sequence[Mapping[str, Any]]
                          ) -> dict[str, dict[str, Any]]:
    """Per base arm with a grid: each rate's mean validation metric and the chosen rate.

    The rate with the best mean of ``config["lr_select"]`` over seeds wins (ties: the first in
    the grid); a failed (diverged) run counts as the worst validation value of the grid, so an
    unstable rate is not chosen on its surviving seeds.
    """
    metric = config.get("lr_select", "val_accuracy")
    mode = config.get("lr_select_mode", "max")
    out: dict[str, dict[str, Any]] = {}
    for base, rates in (config.get("lr_grid") or {}).items():
        rows = []
        variants = [a for a in config["arms"] if a.get("base") == base]
        values: dict[str, list[float | None]] = {}
        failed: dict[str, list[bool]] = {}
        for a in variants:
            mine = [u for u in units if u["arm"] == a["name"]]
            values[a["name"]] = [val_value(u, metric) for u in mine]
            failed[a["name"]] = [(u.get("metrics") or {}).get("diverged") == 1.0 for u in mine]
        pool = [v for vs in values.values() for v in vs if v is not None]
        worst = (min(pool) if mode == "max" else max(pool)) if pool else None
        for a in variants:
            vals = [worst if f else v for v, f in zip(values[a["name"]], failed[a["name"]],
                                                     strict=True)]
            finite = [v for v in vals if v is not None]
            rows.append({"lr": a["lr"], "arm": a["name"], "values": vals,
                         "val_mean": float(np.mean(finite)) if finite else None,
                         "n": len(finite), "n_failed": sum(failed[a["name"]])})
        scored = [r for r in rows if r["val_mean"] is not None]
        if scored:
            pick = (max if mode == "max" else min)(scored, key=lambda r: r["val_mean"])
        else:
            pick = rows[0] if rows else None
        out[base] = {"metric": metric, "mode": mode, "grid": rows, "rates": list(rates),
                     "chosen_lr": pick["lr"] if pick else None,
                     "chosen_arm": pick["arm"] if pick else None,
                     "selected_on_validation": bool(scored)}
    return out


def _premise(p: Mapping[str, Any], arms: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluates one stored premise on the (selected) arms' per-seed values."""
    lhs = arms.get(p["arm"], {}).get("metrics", {}).get(p["metric"], {}).get("values", [])
    if p.get("value") is not None:
        rhs: list[Any] = [p["value"]] * len(lhs)
        rhs_text = f"{p['value']:g}"
    else:
        arm = p.get("than_arm") or p["arm"]
        metric = p.get("than_metric") or p["metric"]
        rhs = arms.get(arm, {}).get("metrics", {}).get(metric, {}).get("values", [])
        rhs_text = f"{arm}.{metric}"
    diffs = [float(a) - float(b) for a, b in zip(lhs, rhs, strict=False)
             if _finite(a) and _finite(b)]
    if not diffs:
        holds = None
        mean = None
    else:
        mean = float(np.mean(diffs))
        holds = mean > 0 if p["op"] == ">" else mean < 0
    lhs_f = [float(v) for v in lhs if _finite(v)]
    rhs_f = [float(v) for v in rhs if _finite(v)]
    return {**p, "lhs_values": lhs, "rhs_values": rhs,
            "lhs_mean": float(np.mean(lhs_f)) if lhs_f else None,
            "rhs_mean": float(np.mean(rhs_f)) if rhs_f else None,
            "mean_diff": mean, "n": len(diffs), "holds": holds,
            "numbers": (f"{p['arm']}.{p['metric']} = "
                        f"{np.mean(lhs_f):.4g}" if lhs_f else f"{p['arm']}.{p['metric']} = –")
            + f" {p['op']} {rhs_text}"
            + (f" = {np.mean(rhs_f):.4g}" if p.get("value") is None and rhs_f else "")
            + (f" (mean per-seed difference {mean:+.4g}, n = {len(diffs)})"
               if mean is not None else " (not measured)")}


def analyze(result: Any) -> dict[str, Any]:
    """Per-arm statistics and the verdict of every claim, from a stored result alone.

    The arms, grids, premises and claims are read from the stored config, so
    ``dltricks lab report`` rebuilds verdicts with the current rule without the experiment's
    code.

    Args:
        result: a stored experiment result (a dict or an
            :class:`~dltricks.lab.results.ExperimentResult`).

    Returns:
        The analysis dict (:class:`~dltricks.lab.results.Analysis` fields): ``arms`` (one entry
        per declared arm, read on its selected learning rate), ``variants`` (every run arm),
        ``lr_selection``, ``premises``, ``premises_met``, ``comparisons``, ``verdict``,
        ``errors`` and the ``rule``.
    """
    result = _as_dict(result)
    config = result["config"]
    seeds = list(config.get("seeds", []))
    run_arms = [{"base": a.get("base", a["name"]), "lr": a.get("lr"), **a}
                for a in config["arms"]]
    base_arms = config.get("base_arms") or [{"name": a["name"], "label": a["label"]}
                                            for a in run_arms]
    units = [u for u in (result.get("units") or {}).values()]
    ok = [u for u in units if u.get("status") == "ok"]
    metric_names = sorted({m for u in ok for m in (u.get("metrics") or {})})
    variants = {a["name"]: _arm_stats([u for u in ok if u["arm"] == a["name"]], seeds,
                                      metric_names, a["label"]) | {"base": a["base"],
                                                                    "lr": a["lr"]}
                for a in run_arms}
    selection = select_learning_rates({**config, "arms": run_arms}, ok)
    arms: dict[str, Any] = {}
    for b in base_arms:
        if b["name"] in selection:
            chosen = selection[b["name"]]["chosen_arm"]
        else:
            chosen = next((a["name"] for a in run_arms if a["base"] == b["name"]), b["name"])
        st = variants.get(chosen) or _arm_stats([], seeds, metric_names, b["label"])
        arms[b["name"]] = {**st, "label": b["label"], "variant": chosen,
                           "lr": (variants.get(chosen) or {}).get("lr")}
    comparisons = []
    default_tips = list(result.get("tips") or [])
    for c in config["claims"]:
        t, b = arms[c["treatment"]], arms[c["baseline"]]
        tv = t["metrics"].get(c["metric"], {}).get("values", [None] * len(seeds))
        bv = b["metrics"].get(c["metric"], {}).get("values", [None] * len(seeds))
        fail_t = [s in t["failed_seeds"] for s in seeds]
        fail_b = [s in b["failed_seeds"] for s in seeds]
        computed = bool(c.get("computed")) or c["metric"] in COMPUTED_METRICS
        comp = compare(tv, bv, c["direction"], failed_treatment=fail_t, failed_baseline=fail_b,
                       computed=computed)
        comparisons.append({"treatment": c["treatment"], "baseline": c["baseline"],
                            "metric": c["metric"], "primary": c.get("primary", True),
                            "tips": list(c.get("tips") or default_tips),
                            "treatment_arm": t["variant"], "baseline_arm": b["variant"],
                            "treatment_lr": t["lr"], "baseline_lr": b["lr"],
                            **comp.to_dict()})
    premises = [_premise(p, arms) for p in config.get("premises") or []]
    premises_met = None if not premises else all(p["holds"] is True for p in premises)
    errors = [{"arm": u["arm"], "seed": u["seed"], "error": u.get("error", "")}
              for u in units if u.get("status") == "error"]
    primary = [c["verdict"] for c in comparisons if c["primary"]]
    if errors:
        verdict = "error"
    elif premises_met is False:
        verdict = "premise not met"
    else:
        verdict = combine_verdicts(primary)
        if verdict == "not measured":
            verdict = "insufficient"
    return {"arms": arms, "variants": variants, "lr_selection": selection,
            "premises": premises, "premises_met": premises_met, "comparisons": comparisons,
            "verdict": verdict, "errors": errors, "rule": RULE}


def apply_holm(results: Sequence[Mapping[str, Any]]) -> int:
    """Holm-adjusts the p-values of every primary comparison of a lab run, in place.

    Adds ``p_holm`` and ``verdict_holm`` to each primary comparison that has a p-value
    (computed comparisons have none and keep their verdict). Returns the family size.
    """
    family = [c for r in results for c in (_get(r, "analysis") or {}).get("comparisons", [])
              if c.get("primary") and _finite(c.get("p_value"))]
    adjusted = holm([c["p_value"] for c in family])
    for c, p in zip(family, adjusted, strict=True):
        c["p_holm"] = p
        c["verdict_holm"] = holm_verdict(c["verdict"], p)
    return len(family)


def tip_verdicts(results: Sequence[Mapping[str, Any]], tip_ids: Sequence[str] | None = None
                 ) -> list[dict[str, Any]]:
    """The verdict of every tip from the primary comparisons that name it.

    Args:
        results: stored experiment results, analysed.
        tip_ids: tips to report (default: every tip a comparison names, in first-seen order);
            a tip without comparisons is "not measured".

    Returns:
        One dict per tip: ``tip``, ``verdict``, ``comparisons`` (experiment, arms, metric,
        effect, interval, verdict as counted, and the raw verdict) and ``experiments``.
    """
    by_tip: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        a = r.get("analysis") or {}
        if a.get("verdict") == "error":
            continue
        premise_failed = a.get("premises_met") is False
        for c in a.get("comparisons", []):
            if not c.get("primary"):
                continue
            for tip in c.get("tips") or r.get("tips") or []:
                by_tip.setdefault(tip, []).append({
                    "experiment": r["id"], "treatment": c["treatment"],
                    "baseline": c["baseline"], "metric": c["metric"], "kind": c.get("kind"),
                    "diff": c.get("diff"), "ci_low": c.get("ci_low"),
                    "ci_high": c.get("ci_high"), "raw_verdict": c["verdict"],
                    "verdict": "premise not met" if premise_failed else c["verdict"],
                    "verdict_holm": c.get("verdict_holm"),
                })
    ids = list(tip_ids) if tip_ids is not None else list(by_tip)
    out = []
    for tip in ids:
        comps = by_tip.get(tip, [])
        out.append({"tip": tip, "verdict": combine_verdicts([c["verdict"] for c in comps]),
                    "comparisons": comps,
                    "experiments": list(dict.fromkeys(c["experiment"] for c in comps))})
    return out


__all__ = [
    "TIP_VERDICTS",
    "analyze",
    "apply_holm",
    "combine_verdicts",
    "select_learning_rates",
    "tip_verdicts",
    "val_value",
]
