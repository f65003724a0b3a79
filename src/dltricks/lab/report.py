"""The lab report: results.json, report.md and one self-contained report.html.

Everything is rebuilt from the stored result files (``OUT/results/<experiment>.json``); verdicts
are recomputed from the per-seed values with :mod:`dltricks.lab.stats`, so the report can never
say more than the stored numbers. Figures are drawn with matplotlib's Agg backend; the HTML
embeds them as base64 PNG, the Markdown links to ``figures/<experiment>.png``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dltricks.lab.stats import mean_ci

VERDICT_COLORS = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#9a6700",
                  "insufficient": "#6e7781", "mixed": "#8250df", "error": "#cf222e"}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}g}"
    return str(v)


def effect_text(c: Mapping[str, Any]) -> str:
    """``metric: Δ = d [lo, hi], g = ...`` for one comparison."""
    return (f"{c['treatment']} vs {c['baseline']}, {c['metric']}: Δ = {_fmt(c['diff'])} "
            f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}], g = {_fmt(c['effect_size'], 3)}")


def reproduce_command(result: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> str:
    cmd = f"dltricks lab run --tips {result['id']} --profile {result.get('profile', 'quick')}"
    if data:
        cmd += f" --data {data['kwargs'].get('path')}"
    return cmd


# --------------------------------------------------------------------------- figures


def _mean_curve(series: list[list[list[Any]]], col: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of curves given as [[step, value, ...], ...] (steps aligned by value)."""
    by_step: dict[int, list[float]] = {}
    for s in series:
        for row in s:
            v = row[col] if len(row) > col else None
            if v is not None and math.isfinite(v):
                by_step.setdefault(int(row[0]), []).append(v)
    steps = np.array(sorted(by_step))
    return steps, np.array([np.mean(by_step[s]) for s in steps])


def _bar_metric(panel: str, primary: Sequence[Mapping[str, Any]]) -> str:
    if ":" in panel:
        return panel.split(":", 1)[1]
    return primary[0]["metric"] if primary else "test_accuracy"


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
        m, half = mean_ci(stats.get("values", []))
        if not math.isnan(m):
            points.append((x, m, 0.0 if math.isnan(half) else half))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]


def figure_png(result: Mapping[str, Any]) -> bytes | None:
    """The experiment's figure as PNG bytes (None when there is nothing to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    analysis = result.get("analysis") or {}
    arms = analysis.get("arms") or {}
    units = [u for u in result.get("units", {}).values() if u.get("status") == "ok"]
    if not arms or not units:
        return None
    plots = list(result.get("plots", ["curves", "bars"]))
    panels: list[str] = []
    for p in plots:
        panels += ["train_loss", "val_accuracy"] if p == "curves" else [p]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    primary = [c for c in analysis.get("comparisons", []) if c["primary"]]
    for ax, panel in zip(axes[0], panels, strict=True):
        for i, (name, arm) in enumerate(arms.items()):
            color = colors[i % len(colors)]
            mine = [u for u in units if u["arm"] == name]
            if panel in ("train_loss", "val_accuracy"):
                key, col = ("train", 1) if panel == "train_loss" else ("val", 1)
                steps, mean = _mean_curve([u["curves"][key] for u in mine], col)
                if len(steps):
                    ax.plot(steps, mean, color=color, label=arm["label"])
            elif panel.startswith("by:"):
                xs, means, halves = _by_prefix(arm["metrics"], panel[3:])
                if xs:
                    ax.errorbar(xs, means, yerr=halves, fmt="o-", color=color, capsize=3,
                                label=arm["label"])
            elif panel.split(":")[0] == "bars":
                metric = _bar_metric(panel, primary)
                vals = arm["metrics"].get(metric, {}).get("values", [])
                m, half = mean_ci(vals)
                if not math.isnan(m):
                    ax.bar(i, m, color=color, alpha=0.6,
                           yerr=None if math.isnan(half) else half, capsize=4)
                    pts = [v for v in vals if v is not None]
                    ax.scatter([i] * len(pts), pts, color="black", s=10, zorder=3)
            elif panel == "reliability":
                accs = [u["probes"]["reliability"] for u in mine
                        if "reliability" in u.get("probes", {})]
                if accs:
                    import warnings

                    warnings.simplefilter("ignore", RuntimeWarning)  # empty bins are NaN
                    conf = np.nanmean([[np.nan if v is None else v for v in a["confidence"]]
                                       for a in accs], axis=0)
                    acc = np.nanmean([[np.nan if v is None else v for v in a["accuracy"]]
                                      for a in accs], axis=0)
                    ax.plot(conf, acc, "o-", color=color, label=arm["label"])
            elif panel == "grad_by_depth":
                norms = [u["probes"]["grad_by_depth"]["mean_norm"] for u in mine
                         if "grad_by_depth" in u.get("probes", {})]
                if norms:
                    arr = np.array([[np.nan if v is None else v for v in n] for n in norms])
                    ax.semilogy(np.arange(1, arr.shape[1] + 1), np.nanmean(arr, 0), "o-",
                                color=color, label=arm["label"])
        if panel == "train_loss":
            ax.set(xlabel="step", ylabel="train loss (mean over seeds)", yscale="log")
        elif panel == "val_accuracy":
            ax.set(xlabel="step", ylabel="val accuracy / Dice (mean over seeds)")
        elif panel.startswith("by:"):
            prefix = panel[3:]
            ax.set(xlabel=prefix.rstrip("_"), ylabel=f"{prefix}* (mean, 95% CI)")
            xs = [x for a in arms.values() for x in _by_prefix(a["metrics"], prefix)[0]]
            if xs and min(xs) > 0 and max(xs) > 20 * min(xs):  # lengths, sizes: log axis
                ax.set_xscale("log", base=2)
        elif panel.split(":")[0] == "bars":
            metric = _bar_metric(panel, primary)
            ax.set_xticks(range(len(arms)), [a["label"] for a in arms.values()], rotation=30,
                          ha="right", fontsize=8)
            ax.set_ylabel(f"{metric} (mean, 95% CI)")
        elif panel == "reliability":
            ax.plot([0, 1], [0, 1], "k--", lw=0.8)
            ax.set(xlabel="confidence", ylabel="accuracy", title="reliability diagram")
        elif panel == "grad_by_depth":
            ax.set(xlabel="layer (input → output)", ylabel="mean grad norm")
        if not panel.startswith("bars") and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(result.get("title", result["id"]), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------- tables


def _arm_rows(result: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    analysis = result.get("analysis") or {}
    arms = analysis.get("arms") or {}
    claimed = [c["metric"] for c in analysis.get("comparisons", [])]
    plotted = [p.split(":", 1)[1] for p in result.get("plots", []) if p.startswith("bars:")]
    present = {m for a in arms.values() for m in a["metrics"]}
    shown = [m for m in dict.fromkeys([*claimed, *plotted, "test_accuracy", "mean_train_loss"])
             if m in present or m in claimed]
    header = ["arm", "seeds ok", *shown, "time (s)"]
    rows = []
    for arm in arms.values():
        cells = [arm["label"], str(arm["n_ok"])]
        for m in shown:
            s = arm["metrics"].get(m)
            if not s or s["mean"] is None:
                cells.append("–")
            else:
                cells.append(f"{_fmt(s['mean'])} ± {_fmt(s['std'], 2)}")
        cells.append(f"{arm['seconds']:.1f}")
        rows.append(cells)
    return header, rows


def _summary_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        analysis = r.get("analysis") or {}
        primary = [c for c in analysis.get("comparisons", []) if c["primary"]]
        rows.append({
            "experiment": r["id"], "tips": r.get("tips", []), "claim": r.get("claim", ""),
            "verdict": analysis.get("verdict", "error"),
            "effects": [effect_text(c) + f" → {c['verdict']}" for c in primary],
            "seconds": r.get("seconds"),
        })
    return rows


# --------------------------------------------------------------------------- writers


def load_results(out: str | Path, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Stored results of a lab run folder (all, or ``ids`` in that order), re-analysed."""
    from dltricks.lab.runner import analyze

    out = Path(out)
    folder = out / "results"
    if not folder.is_dir():
        raise ValueError(f"{str(out)!r} is not a lab run folder: it has no results/ folder.")
    paths = [folder / f"{i}.json" for i in ids] if ids else sorted(folder.glob("*.json"))
    results = []
    for p in paths:
        if not p.is_file():
            continue
        r = json.loads(p.read_text())
        if r.get("config") and r.get("units") is not None:
            errors = (r.get("analysis") or {}).get("errors", [])
            r["analysis"] = analyze(r)
            if errors and not r["analysis"]["errors"]:  # an error outside the units
                r["analysis"]["errors"], r["analysis"]["verdict"] = errors, "error"
        results.append(r)
    return results


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
    from dltricks.lab.runner import versions

    out = Path(out)
    results = load_results(out, ids)
    if data is None:
        prev = out / "results.json"
        if prev.is_file():
            data = json.loads(prev.read_text()).get("data")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    images: dict[str, str] = {}
    for r in results:
        png = figure_png(r)
        if png:
            (out / "figures" / f"{r['id']}.png").write_bytes(png)
            images[r["id"]] = base64.b64encode(png).decode()
    summary = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "profile": results[0].get("profile") if results else None,
        "data": data,
        "wall_seconds": wall_seconds,
        "units_ran": units_ran,
        "units_reused": units_reused,
        "versions": versions(),
        "verdict_rule": "95% Welch t-interval of mean(treatment) - mean(baseline) over seeds; "
                        "supported if it excludes 0 in the claimed direction, contradicted if "
                        "it excludes 0 in the other, inconclusive otherwise (dltricks.lab.stats)",
        "summary": _summary_rows(results),
        "experiments": results,
        "catalog": catalog_status(),
    }
    from dltricks.train.checkpoint import atomic_write_text

    atomic_write_text(out / "results.json", json.dumps(summary, indent=1, default=str))
    atomic_write_text(out / "report.md", _markdown(summary, data))
    atomic_write_text(out / "report.html", _html(summary, images, data))
    return summary


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _header_lines(summary: Mapping[str, Any]) -> list[str]:
    v = summary["versions"]
    wall = summary.get("wall_seconds")
    return [
        f"Profile: {summary.get('profile')}; created {summary['created']}; "
        f"wall time {_fmt(wall, 4) if wall is not None else '–'} s "
        f"({summary.get('units_ran')} runs trained, {summary.get('units_reused')} reused).",
        f"Machine: {v['platform']} ({v['machine']}), torch {v['torch']} with "
        f"{v['torch_threads']} threads, dltricks {v['dltricks']}.",
        f"Verdict rule: {summary['verdict_rule']}.",
    ]


def _markdown(summary: Mapping[str, Any], data: Mapping[str, Any] | None) -> str:
    lines = ["# dltricks lab report", "", *_header_lines(summary), ""]
    if data:
        lines += [f"Data: `{data['name']}` at `{data['kwargs'].get('path')}`.", ""]
    rows = [[s["experiment"], ", ".join(s["tips"]), s["claim"], s["verdict"],
             "; ".join(s["effects"]), _fmt(s["seconds"], 3)] for s in summary["summary"]]
    lines += ["## Summary", "",
              _md_table(["experiment", "tips", "claim", "verdict", "effect", "runtime (s)"], rows),
              ""]
    for r in summary["experiments"]:
        a = r.get("analysis") or {}
        lines += [f"## {r['id']}: {r.get('title', '')}", "", f"**Claim.** {r.get('claim', '')}", ""]
        if r.get("setup"):
            lines += [f"**Setup.** {r['setup']}", ""]
        header, arm_rows = _arm_rows(r)
        if arm_rows:
            lines += [_md_table(header, arm_rows), ""]
        if (Path("figures") / f"{r['id']}.png").name:
            lines += [f"![{r['id']}](figures/{r['id']}.png)", ""]
        lines += [f"**Verdict: {a.get('verdict', 'error')}.**", ""]
        lines += [f"- {effect_text(c)} → {c['verdict']}" + ("" if c["primary"] else
                                                            " (secondary)")
                  for c in a.get("comparisons", [])]
        lines += [f"- error in {e['arm']} seed {e['seed']}: {e['error']}"
                  for e in a.get("errors", [])]
        if r.get("notes"):
            lines += ["", f"*Notes.* {r['notes']}"]
        lines += ["", f"Reproduce: `{reproduce_command(r, data)}`", ""]
    lines += ["## Catalog coverage", ""]
    lines += [_md_table(["tip", "section", "status", "experiments"],
                        [[t["id"], t["section"], t["status"], ", ".join(t["experiments"])]
                         for t in summary["catalog"]]), ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.verdict{font-weight:bold}
section.tip{border-top:2px solid #d0d7de;margin-top:2em}img{max-width:100%}
code{background:#f6f8fa;padding:1px 4px}
"""


def _html_table(header: list[str], rows: list[list[str]], raw: bool = False) -> str:
    def cell(s: str) -> str:
        return s if raw else html.escape(s)

    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(out) + "</table>"


def _verdict_html(v: str) -> str:
    color = VERDICT_COLORS.get(v, "#1f2328")
    return f'<span class="verdict" style="color:{color}">{html.escape(v)}</span>'


def _html(summary: Mapping[str, Any], images: Mapping[str, str],
          data: Mapping[str, Any] | None) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>dltricks lab report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>dltricks lab report</h1>"]
    parts += [f"<p>{e(line)}</p>" for line in _header_lines(summary)]
    if data:
        parts.append(f"<p>Data: <code>{e(data['name'])}</code> at "
                     f"<code>{e(str(data['kwargs'].get('path')))}</code>.</p>")
    rows = [[f'<a href="#tip-{e(s["experiment"])}">{e(s["experiment"])}</a>',
             e(", ".join(s["tips"])), e(s["claim"]), _verdict_html(s["verdict"]),
             "<br>".join(e(x) for x in s["effects"]), e(_fmt(s["seconds"], 3))]
            for s in summary["summary"]]
    parts += ["<h2>Summary</h2>",
              _html_table(["experiment", "tips", "claim", "verdict", "effect", "runtime (s)"],
                          rows, raw=True)]
    for r in summary["experiments"]:
        a = r.get("analysis") or {}
        parts.append(f'<section class="tip" id="tip-{e(r["id"])}" data-tip="{e(r["id"])}">')
        parts.append(f"<h2>{e(r['id'])}: {e(r.get('title', ''))}</h2>")
        parts.append(f"<p><b>Tips:</b> {e(', '.join(r.get('tips', [])))}</p>")
        parts.append(f"<p><b>Claim.</b> {e(r.get('claim', ''))}</p>")
        if r.get("setup"):
            parts.append(f"<p><b>Setup.</b> {e(r['setup'])}</p>")
        header, arm_rows = _arm_rows(r)
        if arm_rows:
            parts.append(_html_table(header, arm_rows))
        if r["id"] in images:
            parts.append(f'<img alt="{e(r["id"])}" src="data:image/png;base64,'
                         f'{images[r["id"]]}">')
        parts.append(f"<p>Verdict: {_verdict_html(a.get('verdict', 'error'))}</p><ul>")
        parts += [f"<li>{e(effect_text(c))} → {_verdict_html(c['verdict'])}"
                  f"{'' if c['primary'] else ' (secondary)'}</li>"
                  for c in a.get("comparisons", [])]
        parts += [f"<li>error in {e(str(x['arm']))} seed {x['seed']}: <code>{e(x['error'])}"
                  "</code></li>" for x in a.get("errors", [])]
        parts.append("</ul>")
        if r.get("notes"):
            parts.append(f"<p><i>Notes.</i> {e(r['notes'])}</p>")
        parts.append(f"<p>Reproduce: <code>{e(reproduce_command(r, data))}</code></p></section>")
    cat_rows = [[t["id"], t["section"], t["status"], ", ".join(t["experiments"])]
                for t in summary["catalog"]]
    parts += ["<h2>Catalog coverage</h2>",
              _html_table(["tip", "section", "status", "experiments"], cat_rows),
              "</body></html>"]
    return "\n".join(parts)


__all__ = ["figure_png", "load_results", "reproduce_command", "write_report"]
