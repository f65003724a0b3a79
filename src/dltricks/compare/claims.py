"""Section 6 — the guide's Mamba-vs-Transformers table, claim by claim, with our measurement.

Each claim (quoted from the guide, with its catalog tip ids) gets a verdict from the sections'
own numbers by a rule stated beside it:

* timing and memory claims compare Mamba with the (first) Transformer family at the longest
  length both reached, and use fitted growth exponents over the longest three lengths;
  a timing ratio counts only when it exceeds :data:`MARGIN` (machine noise on a shared
  2-core VM is ±10-20%);
* accuracy claims take the lab's verdicts (paired by seed, :mod:`dltricks.lab.stats`) of the
  matching experiments' comparisons, **on trained models only**: the accuracy experiments train
  every run to a threshold or a step cap (:mod:`dltricks.lab.curves`), and a comparison counts
  only when both of its families learned the task (most seeds solved it, the experiments'
  premises). A family that did not is reported as "not learned within N steps" and the
  comparison as **premise not met** — never as support for the other family;
* claims about pretraining at scale, ecosystems or clusters cannot be measured here: **not
  measured**, with the reason.

Verdicts: supported, partly supported, computed, inconclusive, conflicting, contradicted,
premise not met (the lab's), combined over a claim's measurements by the lab's one rule
(:func:`dltricks.lab.verdicts.combine_verdicts`, which sets premise-not-met comparisons aside
when others were measured); and not measured (the section that would decide it failed, was
not run, or cannot be run here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dltricks.lab.verdicts import combine_verdicts

MARGIN = 1.25  # a ratio must exceed this to count as a difference
NOT_MEASURED = "not measured"
PREMISE_NOT_MET = "premise not met"


@dataclass(frozen=True)
class GuideClaim:
    """One row of the guide's comparison."""

    id: str
    aspect: str
    guide: str
    tips: tuple[str, ...]
    rule: str
    decide: Callable[[Mapping[str, Any]], tuple[str, str]] | None
    figure: str = ""
    why_not: str = ""


def _ok(sections: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    s = sections.get(name) or {}
    return s.get("result") if s.get("status") == "ok" else None


def _other(fams: Mapping[str, Any]) -> str | None:
    return next((f for f in fams if f.startswith("transformer")), None)


def _at_longest_common(rec_a: Mapping[str, Any], rec_b: Mapping[str, Any], key: str,
                       xkey: str = "lengths") -> tuple[int, float, float] | None:
    common = [x for x in rec_a[xkey] if x in rec_b[xkey]]
    if not common:
        return None
    x = common[-1]
    return x, rec_a[key][rec_a[xkey].index(x)], rec_b[key][rec_b[xkey].index(x)]


def _ratio_verdict(ratio: float, expect_greater: bool) -> str:
    if ratio > MARGIN:
        return "supported" if expect_greater else "contradicted"
    if ratio < 1 / MARGIN:
        return "contradicted" if expect_greater else "supported"
    return "inconclusive"


def quadratic(sections: Mapping[str, Any]) -> tuple[str, str]:
    c = _ok(sections, "complexity")
    if not c:
        return NOT_MEASURED, "complexity section not available"
    tf = _other(c["families"])
    e = c["exponents"].get(tf, {})
    fwd, mem = e.get("fwd_ms"), e.get("peak_mib")
    if fwd is None:
        return "inconclusive", "too few lengths to fit an exponent"
    verdict = "supported" if fwd >= 1.5 else "contradicted" if fwd <= 1.2 else "inconclusive"
    lengths = c["families"][tf]["lengths"]
    return verdict, (f"attention forward time grows as L^{fwd:.2f} over L = "
                     f"{lengths[-3:] if len(lengths) >= 3 else lengths}; peak memory as "
                     f"L^{mem:.2f} (fused SDPA stores no L x L matrix)"
                     if mem is not None else f"attention forward time grows as L^{fwd:.2f}")


def long_sequences(sections: Mapping[str, Any]) -> tuple[str, str]:
    c = _ok(sections, "complexity")
    a = _ok(sections, "accuracy") or {}
    parts, votes = [], []
    if c:
        tf = _other(c["families"])
        r = _at_longest_common(c["families"]["mamba"], c["families"][tf], "fwd_bwd_ms")
        x = (c["crossover"].get(tf) or {}).get("fwd_bwd_ms")
        if r:
            L, m, t = r
            votes.append(_ratio_verdict(t / m, True))
            parts.append(f"at L={L} training step {m:.0f} ms (Mamba) vs {t:.0f} ms "
                         f"({t / m:.1f}x); Mamba cheaper from L≈{x:.0f}" if x else
                         f"at L={L} training step {m:.0f} ms (Mamba) vs {t:.0f} ms "
                         f"({t / m:.1f}x); no crossover in range")
    ih = a.get("mvt_induction_heads")
    if ih and (ih.get("analysis") or {}).get("verdict") != "error":
        comps = [cm for cm in ih["analysis"]["comparisons"] if cm["primary"]]
        gated = [(cm, gate(ih, cm)) for cm in comps]
        votes += [v for _, v in gated]
        parts.append("induction heads, accuracy at 64x the training length (trained models "
                     "only): " + "; ".join(_comparison_text(ih, cm, v) for cm, v in gated))
    if not votes:
        return NOT_MEASURED, "complexity and accuracy sections not available"
    return _combine(votes), "; ".join(parts)


def memory(sections: Mapping[str, Any]) -> tuple[str, str]:
    c = _ok(sections, "complexity")
    i = _ok(sections, "inference")
    parts, votes = [], []
    if c:
        tf = _other(c["families"])
        r = _at_longest_common(c["families"]["mamba"], c["families"][tf], "peak_mib")
        if r:
            L, m, t = r
            votes.append(_ratio_verdict(t / m, True))
            parts.append(f"training peak memory at L={L}: {m:.1f} MiB (Mamba) vs {t:.1f} MiB")
    if i:
        tf = _other(i["families"])
        r = _at_longest_common(i["families"]["mamba"], i["families"][tf], "state_mib",
                               "contexts")
        if r:
            L, m, t = r
            votes.append(_ratio_verdict(t / m, True))
            parts.append(f"generation state at context {L}: {m * 1024:.0f} KiB (Mamba) vs "
                         f"{t * 1024:.0f} KiB KV cache")
    if not votes:
        return NOT_MEASURED, "complexity and inference sections not available"
    return _combine(votes), "; ".join(parts)


def latency(sections: Mapping[str, Any]) -> tuple[str, str]:
    i = _ok(sections, "inference")
    if not i:
        return NOT_MEASURED, "inference section not available"
    tf = _other(i["families"])
    m, t = i["families"]["mamba"], i["families"][tf]
    ratios = [tt / mm for mm, tt in zip(m["token_ms"], t["token_ms"], strict=False)]
    verdicts = [_ratio_verdict(r, True) for r in ratios]
    text = ", ".join(f"{c}: {mm:.2f} vs {tt:.2f} ms" for c, mm, tt in
                     zip(m["contexts"], m["token_ms"], t["token_ms"], strict=False))
    return _combine(verdicts), f"per-token generation latency (Mamba vs Transformer) {text}"


def flat_generation(sections: Mapping[str, Any]) -> tuple[str, str]:
    i = _ok(sections, "inference")
    if not i:
        return NOT_MEASURED, "inference section not available"
    em = i["exponents"]["mamba"]["token_ms"]
    tf = _other(i["families"])
    et = i["exponents"][tf]["token_ms"]
    if em is None or et is None:
        return "inconclusive", "too few contexts"
    verdict = "supported" if abs(em) < 0.15 and et > em + 0.15 else "inconclusive"
    return verdict, (f"per-token latency grows as context^{em:.2f} (Mamba) and "
                     f"context^{et:.2f} (Transformer with KV cache)")


# --------------------------------------------------------------------------- trained models


def _arm_metric(result: Mapping[str, Any], arm: str, metric: str) -> dict[str, Any] | None:
    return (((result.get("analysis") or {}).get("arms") or {}).get(arm, {}).get("metrics")
            or {}).get(metric)


def step_cap(result: Mapping[str, Any]) -> int | None:
    """The step cap of a stored accuracy experiment (its runs' ``train.steps``)."""
    if result.get("step_cap"):
        return int(result["step_cap"])
    recipes = (result.get("config") or {}).get("recipes") or {}
    caps = [int((r.get("train") or {}).get("steps") or 0) for r in recipes.values()]
    return max(caps) if caps and max(caps) > 0 else None


def learned(result: Mapping[str, Any], arm: str) -> bool | None:
    """Whether ``arm`` learned the task: most of its seeds reached the target (the experiments'
    premise, mean of ``solved`` > 0.5). None when the experiment has no target (an old result):
    then the experiment's own premises decide."""
    st = _arm_metric(result, arm, "solved")
    vals = [v for v in (st or {}).get("values") or [] if v is not None]  # seeds that ran
    if not vals:
        return None
    return sum(vals) / len(vals) > 0.5


def not_learned_text(result: Mapping[str, Any], arm: str) -> str:
    """``"mamba: not learned within 1500 steps (1/3 seeds reached 0.95)"``."""
    st = _arm_metric(result, arm, "solved") or {}
    vals = [v for v in st.get("values") or [] if v is not None]
    cap = step_cap(result)
    thr = (result.get("target") or (result.get("config") or {}).get("target") or {}
           ).get("threshold")
    solved = sum(1 for v in vals if v == 1.0)
    return (f"{arm}: not learned within {cap if cap else 'N'} steps ({solved}/{len(vals)} seeds "
            f"reached {thr:g})" if thr is not None else
            f"{arm}: not learned within {cap if cap else 'N'} steps")


def learned_text(result: Mapping[str, Any], arm: str) -> str:
    """``"mamba: learned (5/5 seeds, 466 steps to the threshold on average)"``."""
    vals = [v for v in (_arm_metric(result, arm, "solved") or {}).get("values") or []
            if v is not None]
    steps = [v for v in (_arm_metric(result, arm, "steps_to_target") or {}).get("values") or []
             if v is not None]
    mean = f", {sum(steps) / len(steps):.0f} steps to the threshold on average" if steps else ""
    return f"{arm}: learned ({sum(1 for v in vals if v == 1.0)}/{len(vals)} seeds{mean})"


def gate(result: Mapping[str, Any], comp: Mapping[str, Any]) -> str:
    """A comparison's verdict on trained models only: ``premise not met`` when either family
    did not learn the task (or, for results without a target, when the experiment's premises
    failed); otherwise the lab's verdict."""
    flags = [learned(result, comp["treatment"]), learned(result, comp["baseline"])]
    if False in flags:
        return PREMISE_NOT_MET
    if None in flags and (result.get("analysis") or {}).get("premises_met") is False:
        return PREMISE_NOT_MET
    return comp["verdict"]


def _comparison_text(result: Mapping[str, Any], c: Mapping[str, Any], verdict: str) -> str:
    if verdict == PREMISE_NOT_MET:
        why = [not_learned_text(result, arm) for arm in (c["treatment"], c["baseline"])
               if learned(result, arm) is False] or ["the experiment's premises failed"]
        return f"{c['metric']}: {'; '.join(why)} (premise not met)"
    ci = (f" [{c['ci_low']:.3g}, {c['ci_high']:.3g}]"
          if c.get("ci_low") is not None and c.get("ci_high") is not None
          and c["ci_low"] == c["ci_low"] else "")
    return (f"{c['metric']}: {c['treatment']} {c['mean_treatment']:.3g} vs {c['baseline']} "
            f"{c['mean_baseline']:.3g}, diff {c['diff']:+.3g}{ci} ({verdict})")


def _lab(exp_id: str, label: str, treatment: str = "transformer", baseline: str = "mamba"
         ) -> Callable[[Mapping[str, Any]], tuple[list[str], str]]:
    """The primary ``treatment`` vs ``baseline`` comparisons of one experiment, each gated on
    both families having learned the task; returns (votes, text)."""

    def decide(sections: Mapping[str, Any]) -> tuple[list[str], str]:
        a = _ok(sections, "accuracy") or {}
        r = a.get(exp_id)
        if not r:
            return [], f"{label}: {exp_id} not run"
        if (r.get("analysis") or {}).get("verdict") == "error":
            return [], f"{label}: a run failed (error), not counted"
        comps = [c for c in r["analysis"]["comparisons"] if c["primary"]
                 and c["treatment"] == treatment and c["baseline"] == baseline]
        if not comps:
            return [], f"{label}: no {treatment} vs {baseline} comparison"
        votes = [gate(r, c) for c in comps]
        if all(v == PREMISE_NOT_MET for v in votes):
            why = [not_learned_text(r, arm) for arm in (treatment, baseline)
                   if learned(r, arm) is False] or ["the experiment's premises failed"]
            why += [learned_text(r, arm) for arm in (treatment, baseline)
                    if learned(r, arm) is True]
            return votes, f"{label}: {'; '.join(why)} (premise not met)"
        return votes, f"{label}: " + "; ".join(_comparison_text(r, c, v)
                                               for c, v in zip(comps, votes, strict=True))

    return decide


def global_context(sections: Mapping[str, Any]) -> tuple[str, str]:
    votes, parts = [], []
    for exp_id, label in (("mvt_selective_copying", "selective copying"),
                          ("mvt_mqar", "MQAR"), ("mvt_mnist1d", "MNIST-1D")):
        v, text = _lab(exp_id, label)(sections)
        votes += v
        parts.append(text)
    if not votes:
        return NOT_MEASURED, "; ".join(parts) if parts else "accuracy section not available"
    return _combine(votes), "; ".join(parts)


def edge(sections: Mapping[str, Any]) -> tuple[str, str]:
    e = _ok(sections, "edge")
    i = _ok(sections, "inference")
    if not e:
        return NOT_MEASURED, "edge section not available"
    tf = _other(e["families"])
    m, t = e["families"]["mamba"], e["families"][tf]
    text = (f"int8: size {m['int8']['bytes'] / 1024:.0f} KiB (Mamba) vs "
            f"{t['int8']['bytes'] / 1024:.0f} KiB; per-token latency "
            f"{m['int8']['token_ms']:.2f} vs {t['int8']['token_ms']:.2f} ms at context "
            f"{e['context']}")
    votes = [_ratio_verdict(t["int8"]["token_ms"] / m["int8"]["token_ms"], True)]
    if i:
        v, _ = memory(sections)
        votes.append(v)
    return _combine(votes), text + " (and the memory row)"


def hybrid(sections: Mapping[str, Any]) -> tuple[str, str]:
    a = _ok(sections, "accuracy") or {}
    votes, parts = [], []
    for exp_id, r in a.items():
        if (r.get("analysis") or {}).get("verdict") == "error":
            continue
        comps = [c for c in r["analysis"]["comparisons"]
                 if c["treatment"] == "hybrid" and c["baseline"] == "mamba"]
        if not comps:
            continue
        gated = [gate(r, c) for c in comps]
        votes += gated
        parts.append(f"{exp_id.removeprefix('mvt_')}: " + "; ".join(
            _comparison_text(r, c, v) for c, v in zip(comps, gated, strict=True)))
    if not votes:
        return NOT_MEASURED, "no hybrid arm was run"
    return _combine(votes), "; ".join(parts)


def dynamic_depth(sections: Mapping[str, Any]) -> tuple[str, str]:
    a = _ok(sections, "accuracy") or {}
    r = a.get("mvt_early_exit")
    if not r:
        return NOT_MEASURED, "mvt_early_exit not run"
    if (r.get("analysis") or {}).get("verdict") == "error":
        return NOT_MEASURED, "a run of mvt_early_exit failed (error)"
    arms = r["analysis"]["arms"]
    m = {k: arms[k]["metrics"] for k in ("mamba", "early_exit") if k in arms}
    depth = m.get("early_exit", {}).get("avg_depth", {}).get("mean")
    acc = {k: v.get("test_accuracy", {}).get("mean") for k, v in m.items()}
    comps = {c["metric"]: c for c in r["analysis"]["comparisons"]}
    # the guide's row is about computation: depth and latency decide, accuracy is beside (the
    # lab's experiment also counts its "at no loss of accuracy" among its primaries)
    primary = [c for c in r["analysis"]["comparisons"]
               if c["metric"] in ("avg_depth", "latency_ms")]
    votes = [gate(r, c) for c in primary]
    if primary and all(v == PREMISE_NOT_MET for v in votes):
        why = [not_learned_text(r, arm) for arm in ("early_exit", "mamba")
               if learned(r, arm) is False] or ["the experiment's premises failed"]
        return PREMISE_NOT_MET, "; ".join(why) + " (premise not met)"
    nan = float("nan")
    text = (f"average depth {depth:.2f} of 4 layers at threshold 0.9 (trained models); test "
            f"accuracy {acc.get('early_exit') or nan:.3f} vs {acc.get('mamba') or nan:.3f} at "
            f"full depth ({comps.get('test_accuracy', {}).get('verdict', '?')}); batch latency "
            f"{comps.get('latency_ms', {}).get('verdict', '?')}"
            if depth is not None else "no depth measured")
    return _combine(votes), text


def _combine(votes: list[str]) -> str:
    """The lab's combination rule (:func:`dltricks.lab.verdicts.combine_verdicts`) over the
    votes that were measured; NOT_MEASURED when none was."""
    votes = [v for v in votes if v != NOT_MEASURED]
    return combine_verdicts(votes) if votes else NOT_MEASURED


def _not_here(why: str) -> Callable[[Mapping[str, Any]], tuple[str, str]]:
    return lambda sections: (NOT_MEASURED, f"not measurable here: {why}")


CLAIMS: tuple[GuideClaim, ...] = (
    GuideClaim("quadratic", "2. Attention", "Quadratic complexity O(n^2) limits scalability "
               "for long sequences.", ("vs-tf-quadratic",),
               "attention forward-time exponent >= 1.5 supported, <= 1.2 contradicted",
               quadratic, "complexity"),
    GuideClaim("long_sequences", "2. Attention", "Mamba is better suited for long sequences "
               "with linear or sub-quadratic complexity.", ("vs-mamba-long-sequences",),
               f"training step cheaper at the longest length by > {MARGIN}x, and induction-"
               "heads accuracy at 64x the training length higher (paired), read only when "
               "both families solved the task at the training length", long_sequences,
               "complexity, accuracy"),
    GuideClaim("memory", "3. Efficiency", "Transformers: high memory cost; Mamba: low-memory "
               "settings.", ("vs-tf-cost", "mamba-memory-efficiency"),
               f"Transformer memory (training peak, generation state) > {MARGIN}x Mamba's",
               memory, "complexity, inference"),
    GuideClaim("latency", "3. Efficiency", "Mamba has lower latency in resource-constrained "
               "environments (real-time processing).",
               ("vs-mamba-latency", "vs-mamba-use-realtime", "choose-mamba-latency"),
               f"per-token generation latency lower by > {MARGIN}x at every context", latency,
               "inference"),
    GuideClaim("flat_generation", "2. Attention", "Recurrent state vs KV cache: Mamba's "
               "per-token cost does not grow with the context.", ("vs-mamba-long-sequences",),
               "|exponent| < 0.15 for Mamba and Transformer's exponent larger by > 0.15",
               flat_generation, "inference"),
    GuideClaim("global_context", "1. Architecture / 5. Use cases", "Transformers dominate "
               "tasks requiring global context (state-of-the-art accuracy).",
               ("vs-tf-global-context", "vs-tf-use-global", "choose-tf-global"),
               "trained to a threshold or a step cap: Transformer needs fewer steps to the "
               "threshold and is more accurate at equal training seconds (paired 95%) on "
               "selective copying, MQAR and MNIST-1D; premise: both families learn the task",
               global_context, "accuracy"),
    GuideClaim("edge", "3. Efficiency / 5. Use cases", "Mamba suits edge devices; "
               "Transformers struggle on edge devices.",
               ("vs-mamba-use-edge", "vs-tf-edge", "vs-mamba-on-device"),
               f"int8 per-token latency lower by > {MARGIN}x, and the memory row", edge,
               "edge"),
    GuideClaim("hybrid", "1. Architecture / 2. Attention", "Mamba integrates attention "
               "modules (hybrid attention-convolution) for a local-global balance.",
               ("vs-mamba-hybrid", "mamba-integrated-attention", "mamba-custom-attention"),
               "hybrid Mamba + attention learns the token tasks faster than Mamba (fewer steps "
               "to the threshold, paired 95%); premise: both learn the task", hybrid,
               "accuracy"),
    GuideClaim("dynamic_depth", "3. Efficiency", "Dynamic scaling reduces redundant "
               "computation, e.g. skips layers for simpler inputs.",
               ("vs-mamba-skip-layers", "mamba-dynamic-scaling", "vs-mamba-dynamic"),
               "trained early-exit Mamba uses fewer layers and less batch latency (paired 95%); "
               "accuracy reported beside; premise: both models learn the task", dynamic_depth,
               "accuracy"),
    GuideClaim("scale", "4. Scalability", "Transformers scale exceptionally with data and "
               "parameters; pretraining on massive datasets is critical.",
               ("vs-tf-scale", "vs-tf-pretraining-critical", "vs-mamba-less-pretraining"),
               "", _not_here("needs pretraining runs at scales (billions of tokens) far "
                             "beyond a CPU budget")),
    GuideClaim("ecosystem", "7. Practical tips", "Choose Transformers for a well-supported "
               "ecosystem and abundant compute.", ("choose-tf-ecosystem", "choose-tf-resources",
                                                   "vs-tf-use-high-resource"),
               "", _not_here("a property of the software ecosystem, not of the models")),
    GuideClaim("heavy_optimization", "3. Efficiency", "Transformers require heavy "
               "optimization (mixed precision, model parallelism).",
               ("vs-tf-heavy-optimization",), "",
               _not_here("model parallelism needs several accelerators; mixed precision is "
                         "a Trainer option (train.precision) that the lab does not measure")),
)


def coverage() -> dict[str, tuple[str, ...]]:
    """The catalog tips each measurable claim checks: ``{"compare.<claim id>": tip ids}``
    (claims that cannot be measured here are left out)."""
    return {f"compare.{c.id}": tuple(c.tips) for c in CLAIMS if c.decide is not None and c.rule}


def evaluate_claims(sections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every claim's verdict and the measurement it rests on."""
    rows = []
    for c in CLAIMS:
        # a section that was not run is "not measured" inside each rule (``_ok``); anything
        # else that raises is a bug and must not pass for absent data
        verdict, evidence = c.decide(sections) if c.decide else (NOT_MEASURED, c.why_not)
        rows.append({"id": c.id, "aspect": c.aspect, "guide": c.guide, "tips": list(c.tips),
                     "rule": c.rule, "verdict": verdict, "evidence": evidence,
                     "figure": c.figure})
    return rows


__all__ = ["CLAIMS", "MARGIN", "NOT_MEASURED", "PREMISE_NOT_MET", "GuideClaim", "coverage",
           "evaluate_claims", "gate", "learned", "learned_text", "not_learned_text", "step_cap"]
