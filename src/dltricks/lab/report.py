"""The lab report: results.json, report.md and one self-contained report.html.

Everything is rebuilt from the stored result files (``OUT/results/<experiment>.json``, validated
by :mod:`dltricks.lab.results`); verdicts are recomputed from the per-seed values by
:func:`dltricks.lab.verdicts.analyze`, so the report can never say more than the stored numbers.
It opens with the verdict of every tip and a forest plot of every primary comparison, then one
section per experiment (premises, learning-rate grid, arms, comparisons with Welch, Holm and the
minimum detectable effect beside the rule, per-seed values, the machine it ran on).

One renderer serves the lab and ``dltricks compare``: :func:`render` fills the Jinja2 templates
in ``dltricks/lab/templates`` (HTML autoescaped; Markdown through the ``mdcell`` filter).
Figures are drawn with matplotlib's Agg backend; the HTML embeds them as base64 PNG, the
Markdown links to ``figures/<name>.png``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dltricks.lab.results import Analysis, ExperimentResult, ResultError, parse_result
from dltricks.lab.stats import RULE, mean_ci

VERDICT_COLORS = {"supported": "#1a7f37", "computed": "#0969da", "partly supported": "#4d8f3a",
                  "contradicted": "#cf222e", "conflicting": "#8250df",
                  "inconclusive": "#9a6700", "insufficient": "#6e7781",
                  "premise not met": "#bc4c00", "not measured": "#6e7781",
                  "not measurable here": "#6e7781", "missing": "#6e7781", "error": "#cf222e",
                  "measured": "#1a7f37", "analysis": "#0969da"}


# --------------------------------------------------------------------------- rendering


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a table: 4 significant digits, "–" for None/NaN, "∞" for infinities."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}g}"
    return str(v)


def _mdcell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


@cache
def _env(kind: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dltricks.lab", "templates"),
        autoescape=kind == "html", trim_blocks=False, lstrip_blocks=False,
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    env.filters["mdcell"] = _mdcell
    env.globals["verdict_colors"] = VERDICT_COLORS
    return env


def render(template: str, **context: Any) -> str:
    """Renders a template of ``dltricks/lab/templates`` (``*.html.j2`` autoescaped).

    Args:
        template: file name, e.g. ``"lab_report.html.j2"``.
        **context: the template's variables.

    Returns:
        The rendered text.
    """
    kind = "html" if template.endswith(".html.j2") else "md"
    return _env(kind).get_template(template).render(**context)


def b64_images(pngs: Mapping[str, bytes]) -> dict[str, str]:
    """PNG bytes as base64 strings for ``<img src="data:...">``."""
    return {k: base64.b64encode(v).decode() for k, v in pngs.items()}


def reproduce_command(result: Mapping[str, Any] | ExperimentResult,
                      data: Mapping[str, Any] | None = None) -> str:
    r = _model(result)
    cmd = f"dltricks lab run --tips {r.id} --profile {r.profile or 'quick'}"
    if data:
        cmd += f" --data {data.get('kwargs', {}).get('path')}"
    return cmd


def _model(result: Mapping[str, Any] | ExperimentResult) -> ExperimentResult:
    return result if isinstance(result, ExperimentResult) else parse_result(result)


# --------------------------------------------------------------------------- figures


def _mean_curve(series: list[list[list[Any]]], col: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of curves given as [[step, value, ...], ...].

    A seed whose run ended earlier (e.g. stopped once it solved its task) keeps its last value
    up to the longest run, so the mean never silently drops seeds as runs end.
    """
    curves = []
    for s in series:
        pts = [(int(row[0]), row[col]) for row in s
               if len(row) > col and row[col] is not None and math.isfinite(row[col])]
        if pts:
            curves.append(pts)
    steps = sorted({st for pts in curves for st, _ in pts})
    means = []
    for st in steps:
        vals = []
        for pts in curves:
            held = [v for x, v in pts if x <= st]
            if held:
                vals.append(held[-1])
        means.append(float(np.mean(vals)))
    return np.array(steps), np.array(means)


def _by_prefix(metrics: Mapping[str, Any], prefix: str
               ) -> tuple[list[float], list[float], list[float]]:
    """(x, mean, CI half-width) of the metrics named ``<prefix><x>``, sorted by x."""
    points = []
    for name, stats in metrics.items():
        if not name.startswith(prefix):
            continue
        try:
            x = float(name[len(prefix):])
        except ValueError:
            continue
        values = stats.get("values", []) if isinstance(stats, Mapping) else stats.values
        m, half = mean_ci(values)
        if not math.isnan(m):
            points.append((x, m, 0.0 if math.isnan(half) else half))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def figure_png(result: Mapping[str, Any] | ExperimentResult) -> bytes | None:
    """The experiment's figure as PNG bytes (None when there is nothing to draw).

    With a learning-rate grid, curves and bars show each arm at its selected rate.
    """
    plt = _plt()
    r = _model(result)
    analysis = r.analysis
    units = [u for u in r.units.values() if u.status == "ok"]
    if analysis is None or not analysis.arms or not units:
        return None
    arms = analysis.arms
    panels: list[str] = []
    for p in r.plots or ["curves", "bars"]:
        panels += ["train_loss", "val_accuracy"] if p == "curves" else [p]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    primary = [c for c in analysis.comparisons if c.primary]
    bar_default = primary[0].metric if primary else "test_accuracy"
    for ax, panel in zip(axes[0], panels, strict=True):
        bar_metric = panel.split(":", 1)[1] if panel.startswith("bars:") else bar_default
        for i, (name, arm) in enumerate(arms.items()):
            color = colors[i % len(colors)]
            mine = [u for u in units if u.arm == (arm.variant or name)]
            if panel in ("train_loss", "val_accuracy"):
                key = "train" if panel == "train_loss" else "val"
                steps, mean = _mean_curve([u.curves.get(key, []) for u in mine], 1)
                if len(steps):
                    ax.plot(steps, mean, color=color, label=arm.label)
            elif panel.startswith("by:"):
                xs, means, halves = _by_prefix(arm.metrics, panel[3:])
                if xs:
                    ax.errorbar(xs, means, yerr=halves, fmt="o-", color=color, capsize=3,
                                label=arm.label)
            elif panel.split(":")[0] == "bars":
                st = arm.metrics.get(bar_metric)
                vals = st.values if st else []
                m, half = mean_ci(vals)
                if not math.isnan(m):
                    ax.bar(i, m, color=color, alpha=0.6,
                           yerr=None if math.isnan(half) else half, capsize=4)
                    pts = [v for v in vals if v is not None]
                    ax.scatter([i] * len(pts), pts, color="black", s=10, zorder=3)
            elif panel == "reliability":
                rel = [u.probes["reliability"] for u in mine if "reliability" in u.probes]
                if rel:
                    import warnings

                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # empty bins are NaN
                        conf = np.nanmean([[np.nan if v is None else v for v in a["confidence"]]
                                           for a in rel], axis=0)
                        acc = np.nanmean([[np.nan if v is None else v for v in a["accuracy"]]
                                          for a in rel], axis=0)
                    ax.plot(conf, acc, "o-", color=color, label=arm.label)
            elif panel == "grad_by_depth":
                norms = [u.probes["grad_by_depth"]["mean_norm"] for u in mine
                         if "grad_by_depth" in u.probes]
                if norms:
                    arr = np.array([[np.nan if v is None else v for v in n] for n in norms])
                    ax.semilogy(np.arange(1, arr.shape[1] + 1), np.nanmean(arr, 0), "o-",
                                color=color, label=arm.label)
        if panel == "train_loss":
            ax.set(xlabel="step", ylabel="train loss (mean over seeds)", yscale="log")
        elif panel == "val_accuracy":
            ax.set(xlabel="step", ylabel="val accuracy / Dice (mean over seeds)")
        elif panel.startswith("by:"):
            prefix = panel[3:]
            ax.set(xlabel=prefix.rstrip("_"), ylabel=f"{prefix}* (mean, 95% CI)")
            xs = [x for a in arms.values() for x in _by_prefix(a.metrics, prefix)[0]]
            if xs and min(xs) > 0 and max(xs) > 20 * min(xs):  # lengths, sizes: log axis
                ax.set_xscale("log", base=2)
        elif panel.split(":")[0] == "bars":
            ax.set_xticks(range(len(arms)), [a.label for a in arms.values()], rotation=30,
                          ha="right", fontsize=8)
            ax.set_ylabel(f"{bar_metric} (mean, 95% CI)")
        elif panel == "reliability":
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
            ax.set(xlabel="confidence", ylabel="accuracy", title="reliability diagram")
        elif panel == "grad_by_depth":
            ax.set(xlabel="layer (input → output)", ylabel="mean grad norm")
        if not panel.startswith("bars") and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(r.title or r.id, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def forest_png(results: Sequence[ExperimentResult]) -> bytes | None:
    """Forest plot of every primary comparison that has an interval, one panel per metric.

    Each row is treatment − baseline with its interval, coloured by verdict; the label ends
    with the claimed direction (↑ higher, ↓ lower). Computed comparisons are not drawn.
    """
    rows: dict[str, list[tuple[str, Any]]] = {}
    for r in results:
        if r.analysis is None:
            continue
        for c in r.analysis.comparisons:
            if c.primary and c.kind in ("paired", "exact") and c.ci_low is not None \
                    and math.isfinite(c.ci_low):
                arrow = "↑" if c.direction == "higher" else "↓"
                rows.setdefault(c.metric, []).append(
                    (f"{r.id}: {c.treatment} vs {c.baseline} {arrow}", c))
    if not rows:
        return None
    plt = _plt()
    metrics = sorted(rows, key=lambda m: -len(rows[m]))
    heights = [len(rows[m]) + 1.2 for m in metrics]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 0.26 * sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        items = rows[metric]
        for y, (_, c) in enumerate(reversed(items)):
            color = VERDICT_COLORS.get(c.verdict, "#1f2328")
            ax.plot([c.ci_low, c.ci_high], [y, y], color=color, lw=2)
            ax.plot([c.diff], [y], "o", color=color, ms=4)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(items)), [lab for lab, _ in reversed(items)], fontsize=7)
        ax.set_ylim(-0.7, len(items) - 0.3)
        ax.set_title(f"{metric}: treatment − baseline (95% interval)", fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    from matplotlib.lines import Line2D

    shown = sorted({c.verdict for items in rows.values() for _, c in items})
    axes[0, 0].legend([Line2D([0], [0], color=VERDICT_COLORS.get(v, "#1f2328"), lw=2)
                       for v in shown], shown, fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- context


def _comparison_text(c: Any) -> str:
    if c.kind == "computed":
        return (f"{c.treatment} vs {c.baseline}, {c.metric}: Δ = {fmt(c.diff)} exact "
                f"(computed)")
    return (f"{c.treatment} vs {c.baseline}, {c.metric}: Δ = {fmt(c.diff)} "
            f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]")


def effect_text(c: Mapping[str, Any]) -> str:
    """``treatment vs baseline, metric: Δ = d [lo, hi]`` for one stored comparison."""
    from dltricks.lab.results import ComparisonResult

    return _comparison_text(ComparisonResult.model_validate(c))


def _machine_line(r: ExperimentResult) -> str:
    m = r.machine or {}
    if not m:
        v = r.versions
        return (f"{v.get('platform', '?')}, torch {v.get('torch', '?')} with "
                f"{v.get('torch_threads', '?')} threads (versions stored with the result; "
                "no load recorded)") if v else ""
    cores = m.get("cores", m.get("cpu_count", "?"))
    load = m.get("load_average", m.get("load_avg"))
    if isinstance(load, list | tuple):
        load = " ".join(f"{x:.2f}" for x in load)
    ex = r.execution or {}
    workers = ex.get("workers")
    parts = [f"{m.get('platform', '?')}", f"CPU {m.get('cpu', m.get('machine', '?'))}",
             f"{cores} cores", f"torch {m.get('torch', '?')} with {m.get('torch_threads', '?')} "
             "threads", f"load average {load or 'n/a'} when it started"]
    if workers:
        parts.append(f"{workers} worker process{'es' if workers != 1 else ''}")
    if ex.get("ray"):
        parts.append(f"Ray at {ex['ray']}")
    return ", ".join(parts) + (f" ({r.started} – {r.finished})" if r.started else "")


def _shown_metrics(r: ExperimentResult) -> list[str]:
    a = r.analysis
    assert a is not None
    claimed = [c.metric for c in a.comparisons]
    plotted = [p.split(":", 1)[1] for p in r.plots if p.startswith("bars:")]
    present = {m for arm in a.arms.values() for m in arm.metrics}
    return [m for m in dict.fromkeys([*claimed, *plotted, "test_accuracy", "mean_train_loss"])
            if m in present or m in claimed]


def _experiment_context(r: ExperimentResult, has_image: bool,
                        data: Mapping[str, Any] | None) -> dict[str, Any]:
    a = r.analysis
    ctx: dict[str, Any] = {
        "id": r.id, "title": r.title, "tips": r.tips, "claim": r.claim, "setup": r.setup,
        "notes": r.notes, "machine": _machine_line(r), "has_image": has_image,
        "verdict": a.verdict if a else "error", "reproduce": reproduce_command(r, data),
        "premises": [], "lr_rows": [], "lr_header": [], "lr_metric": "", "arm_rows": [],
        "arm_header": [], "comp_rows": [], "comp_header": [], "comp_verdict_cols": (),
        "seed_rows": [], "seed_header": [],
        "errors": [e.model_dump() for e in a.errors] if a else [],
    }
    if a is None:
        return ctx
    ctx["premises"] = [{"text": p.text, "numbers": p.numbers, "holds": p.holds}
                       for p in a.premises]
    if a.lr_selection:
        rates = sorted({g.lr for s in a.lr_selection.values() for g in s.grid})
        ctx["lr_metric"] = next(iter(a.lr_selection.values())).metric
        ctx["lr_header"] = ["arm", *[f"lr {x:g}" for x in rates], "chosen"]
        for base, s in a.lr_selection.items():
            by_lr = {g.lr: g for g in s.grid}
            cells = [a.arms[base].label if base in a.arms else base]
            for x in rates:
                g = by_lr.get(x)
                cells.append("" if g is None else fmt(g.val_mean) + (
                    f" ({g.n_failed} failed)" if g.n_failed else ""))
            # with 3+ rates a choice at either end says the best rate may lie outside the
            # grid; with 2 rates every choice is an end, so the mark would say nothing
            edge = (len(s.rates) > 2 and s.chosen_lr is not None
                    and s.chosen_lr in (min(s.rates), max(s.rates)))
            cells.append("–" if s.chosen_lr is None else
                         f"{s.chosen_lr:g}" + (" (edge of the grid)" if edge else ""))
            ctx["lr_rows"].append(cells)
    shown = _shown_metrics(r)
    ctx["arm_header"] = ["arm", "lr", "seeds ok", "failed", *shown, "time (s)"]
    for arm in a.arms.values():
        cells = [arm.label, fmt(arm.lr), str(arm.n_ok), str(arm.n_failed)]
        for m in shown:
            s = arm.metrics.get(m)
            cells.append("–" if not s or s.mean is None else
                         f"{fmt(s.mean)} ± {fmt(s.std, 2)}")
        cells.append(f"{arm.seconds:.1f}")
        ctx["arm_rows"].append(cells)
    ctx["comp_header"] = ["comparison", "metric", "test", "Δ", "95% interval", "p", "verdict",
                          "Holm p", "Holm", "pairs", "failed (t/b)", "MDE (80%)",
                          "Welch interval", "Welch", "role"]
    ctx["comp_verdict_cols"] = (6, 8, 13)
    for c in a.comparisons:
        arrow = "↑" if c.direction == "higher" else "↓"
        test = {"paired": "paired t", "exact": "exact McNemar", "computed": "exact (computed)",
                "none": "–"}.get(c.kind, c.kind)
        ctx["comp_rows"].append([
            f"{c.treatment} vs {c.baseline}", f"{c.metric} {arrow}", test, fmt(c.diff),
            "exact" if c.kind == "computed" else f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
            fmt(c.p_value, 3), c.verdict, fmt(c.p_holm, 3), c.verdict_holm or "–",
            str(c.n_pairs), f"{c.failed_treatment}/{c.failed_baseline}", fmt(c.mde, 3),
            "–" if c.welch_low is None or math.isnan(c.welch_low)
            else f"[{fmt(c.welch_low)}, {fmt(c.welch_high)}]", c.welch_verdict,
            "primary" if c.primary else "secondary"])
    seeds = (r.config or {}).get("seeds", [])
    claimed = list(dict.fromkeys(c.metric for c in a.comparisons))
    ctx["seed_header"] = ["arm", "metric", *[f"seed {s}" for s in seeds]]
    for arm in a.arms.values():
        for m in claimed:
            s = arm.metrics.get(m)
            if s is not None:
                ctx["seed_rows"].append([arm.label, m, *[fmt(v) for v in s.values]])
    return ctx


def _component_cells(components: Sequence[str]) -> str:
    from dltricks.lab import catalog

    status = getattr(catalog, "component_status", None)
    if status is None:
        return ", ".join(components)
    return ", ".join(c if status(c) == "exists" else f"{c} (planned)" for c in components)


# --------------------------------------------------------------------------- writers


def load_results(out: str | Path, ids: Sequence[str] | None = None) -> list[ExperimentResult]:
    """Stored results of a lab run folder (all, or ``ids`` in that order), validated and
    re-analysed with the current rule.

    Raises:
        ValueError: ``out`` has no ``results/`` folder, or a stored result is invalid.
    """
    from dltricks.lab.verdicts import analyze

    out = Path(out)
    folder = out / "results"
    if not folder.is_dir():
        raise ValueError(f"{str(out)!r} is not a lab run folder: it has no results/ folder.")
    paths = [folder / f"{i}.json" for i in ids] if ids else sorted(folder.glob("*.json"))
    results = []
    for p in paths:
        if not p.is_file():
            continue
        try:
            r = parse_result(json.loads(p.read_text()))
        except (json.JSONDecodeError, ResultError) as err:
            raise ValueError(f"{p}: {err}") from None
        if r.config:
            errors = r.analysis.errors if r.analysis else []
            analysis = analyze(r)
            if errors and not analysis["errors"]:  # an error outside the units
                analysis["errors"] = [e.model_dump() for e in errors]
                analysis["verdict"] = "error"
            r = r.model_copy(update={"analysis": Analysis.model_validate(analysis)})
        results.append(r)
    return results


def _tips_context(results: Sequence[ExperimentResult]) -> tuple[list[dict[str, Any]],
                                                                 list[list[str]]]:
    from dltricks.lab.catalog import TIPS
    from dltricks.lab.verdicts import tip_verdicts

    dumped = [r.model_dump(mode="python") for r in results]
    rows = tip_verdicts(dumped)
    guide = {t.id: t.guide for t in TIPS}
    tips, md_rows = [], []
    for row in rows:
        comps = [{"experiment": c["experiment"], "verdict": c["verdict"],
                  "verdict_holm": c.get("verdict_holm"),
                  "text": _comparison_text(_Cmp(c))} for c in row["comparisons"]]
        tips.append({"id": row["tip"], "guide": guide.get(row["tip"], ""),
                     "verdict": row["verdict"], "comparisons": comps})
        md_rows.append([row["tip"], guide.get(row["tip"], ""), row["verdict"],
                        "; ".join(f"{c['experiment']}: {c['text']} → {c['verdict']}"
                                  for c in comps)])
    return tips, md_rows


class _Cmp:
    """Attribute view of a tip comparison dict (for :func:`_comparison_text`)."""

    def __init__(self, d: Mapping[str, Any]) -> None:
        self.__dict__.update(d)


def write_report(out: str | Path, ids: Sequence[str] | None = None, *,
                 wall_seconds: float | None = None, data: Mapping[str, Any] | None = None,
                 units_ran: int | None = None, units_reused: int | None = None
                 ) -> dict[str, Any]:
    """Writes results.json, report.md, report.html and figures/ into ``out``.

    Args:
        out: the lab run folder.
        ids: experiments to include (default: every stored result).
        wall_seconds: wall time of the run that produced the results, if known.
        data: the user dataset config, if the run used one.
        units_ran: units trained in that run; units_reused: units taken from stored results.

    Returns:
        The results.json dict.
    """
    from dltricks.lab.catalog import catalog_status
    from dltricks.lab.verdicts import apply_holm, tip_verdicts
    from dltricks.train.checkpoint import atomic_write_text
    from dltricks.utils.machine import machine_info

    out = Path(out)
    models = load_results(out, ids)
    if data is None:
        prev = out / "results.json"
        if prev.is_file():
            try:
                data = json.loads(prev.read_text()).get("data")
            except json.JSONDecodeError:
                data = None
    experiments = [r.model_dump(mode="python") for r in models]
    family = apply_holm(experiments)
    models = [parse_result(e) for e in experiments]
    (out / "figures").mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {}
    for r in models:
        png = figure_png(r)
        if png:
            pngs[r.id] = png
    forest = forest_png(models)
    if forest:
        pngs["forest"] = forest
    for name, png in pngs.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    catalog = catalog_status()
    summary = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "profile": models[0].profile if models else None,
        "data": data,
        "wall_seconds": wall_seconds,
        "units_ran": units_ran,
        "units_reused": units_reused,
        "versions": machine_info(),
        "verdict_rule": RULE,
        "holm_family": family,
        "tips": tip_verdicts(experiments, None),
        "summary": [{
            "experiment": r.id, "tips": r.tips, "claim": r.claim,
            "verdict": r.analysis.verdict if r.analysis else "error",
            "premises_met": r.analysis.premises_met if r.analysis else None,
            "effects": [_comparison_text(c) + f" → {c.verdict}"
                        for c in (r.analysis.comparisons if r.analysis else []) if c.primary],
            "seconds": r.seconds} for r in models],
        "experiments": experiments,
        "catalog": catalog,
    }
    atomic_write_text(out / "results.json", json.dumps(summary, indent=1, default=str))
    ctx = _report_context(summary, models, set(pngs), data)
    atomic_write_text(out / "report.md", render("lab_report.md.j2", **ctx))
    atomic_write_text(out / "report.html", render("lab_report.html.j2", **ctx,
                                                  images=b64_images(pngs)))
    return summary


def _report_context(summary: Mapping[str, Any], models: Sequence[ExperimentResult],
                    figures: set[str], data: Mapping[str, Any] | None) -> dict[str, Any]:
    v = summary["versions"]
    wall = summary.get("wall_seconds")
    header = [
        f"Profile: {summary.get('profile')}; created {summary['created']}; wall time "
        f"{fmt(wall, 4) if wall is not None else '–'} s ({summary.get('units_ran')} runs "
        f"trained, {summary.get('units_reused')} reused).",
        f"Report written with dltricks {v.get('dltricks')}, torch {v.get('torch')}; the "
        "machine, threads and load each experiment ran with are given in its section.",
        f"Verdict rule: {summary['verdict_rule']}.",
        "Mixed precision is not measured in the lab (every run is float32 on the CPU).",
    ]
    tips, tip_rows = _tips_context(models)
    summary_rows = []
    for s in summary["summary"]:
        premises = ("–" if s["premises_met"] is None else
                    "met" if s["premises_met"] else "not met")
        summary_rows.append([s["experiment"], ", ".join(s["tips"]), s["claim"], s["verdict"],
                             premises, fmt(s["seconds"], 3)])
    verdicts = {t["tip"]: t["verdict"] for t in summary["tips"]}
    # a tip counts as measured by its verdict here, not because an experiment lists it
    catalog_rows = [[t["id"], t["section"], _component_cells(t.get("components", [])),
                     verdicts.get(t["id"], "analysis" if t["status"] == "analysis"
                                  else "not measured"),
                     ", ".join(t["experiments"])] for t in summary["catalog"]]
    return {
        "title": "dltricks lab report", "header_lines": header,
        "data": {"name": data["name"], "path": data.get("kwargs", {}).get("path")}
        if data else None,
        "holm_family": summary["holm_family"], "tips": tips, "tip_rows": tip_rows,
        "summary_rows": summary_rows,
        "experiments": [_experiment_context(r, r.id in figures, data) for r in models],
        "catalog_header": ["tip", "section", "components", "verdict in this run",
                           "experiments"],
        "catalog_rows": catalog_rows,
    }


__all__ = ["VERDICT_COLORS", "b64_images", "effect_text", "figure_png", "fmt", "forest_png",
           "load_results", "render", "reproduce_command", "write_report"]
