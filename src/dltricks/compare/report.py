"""The comparison's report: report.html (self-contained), report.md + figures/, results.json.

Figures are drawn from the stored sections only, so the report can be rebuilt without
re-measuring (``dltricks compare --report-only``). The accuracy figures are the lab's own
(:func:`dltricks.lab.report.figure_png`) drawn from the lab results kept under ``OUT/lab``.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dltricks.compare.claims import evaluate_claims
from dltricks.lab.report import b64_images, figure_png, fmt, render
from dltricks.lab.results import ResultError, parse_result
from dltricks.train.checkpoint import atomic_write_text
from dltricks.utils.machine import machine_info


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    return buf.getvalue()


def _loglog(ax, xs, ys, label: str, exponent: float | None) -> str | None:
    """Plots the positive points on log-log axes; returns the line's colour (None: no points)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0]
    if not pts:
        return None
    lab = label + (f" (∝ L^{exponent:.2f})" if exponent is not None else "")
    (line,) = ax.loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=lab, base=2)
    return line.get_color()


def complexity_png(c: Mapping[str, Any]) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    titles = {"fwd_ms": "forward (ms)", "fwd_bwd_ms": "forward + backward (ms)",
              "peak_mib": "peak memory, fwd+bwd (MiB)"}
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        colours = {f: _loglog(ax, r["lengths"], r[key], r["label"], c["exponents"][f][key])
                   for f, r in c["families"].items()}
        for f, x in c.get("crossover", {}).items():  # Mamba cheaper than family f from here
            if x.get(key):
                ax.axvline(x[key], color=colours.get(f) or "gray", ls="--", lw=0.8)
                ax.annotate(f" {x[key]:.0f}", (x[key], 0.02), xycoords=("data", "axes fraction"),
                            ha="left", va="bottom", fontsize=7, color=colours.get(f) or "gray")
        ax.set(xlabel="sequence length L", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _png(fig)


def inference_png(i: Mapping[str, Any]) -> bytes:
    plt = _plt()
    prompt = all("prefill_ms" in r for r in i["families"].values())  # older results lack it
    fig, axes = plt.subplots(1, 3 if prompt else 2, figsize=(13.5 if prompt else 9, 3.6))
    for f, r in i["families"].items():
        _loglog(axes[0], r["contexts"], r["token_ms"], r["label"],
                i["exponents"][f]["token_ms"])
        _loglog(axes[1], r["contexts"], [v * 1024 for v in r["state_mib"]], r["label"],
                i["exponents"][f]["state_mib"])
        if prompt:
            _loglog(axes[2], r["contexts"], r["prefill_ms"], r["label"],
                    i["exponents"][f].get("prefill_ms"))
    axes[0].set(xlabel="context length", title="per-token generation latency (ms)")
    axes[1].set(xlabel="context length", title="state / KV cache (KiB)")
    if prompt:
        axes[2].set(xlabel="context length", title="prompt (prefill) time (ms)")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _png(fig)


def edge_png(e: Mapping[str, Any]) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    fams = list(e["families"])
    for ax, (key, title, scale) in zip(axes, (("bytes", "size (KiB)", 1 / 1024),
                                               ("token_ms", "per-token latency (ms)", 1),
                                               ("forward_ms", f"forward, L={e['seq_len']} (ms)",
                                                1)), strict=True):
        for j, prec in enumerate(("fp32", "int8")):
            vals = [e["families"][f][prec][key] * scale for f in fams]
            ax.bar([k + 0.38 * j for k in range(len(fams))], vals, width=0.38, label=prec)
        ax.set_xticks([k + 0.19 for k in range(len(fams))],
                      [e["families"][f]["label"] for f in fams], fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def learning_curves_png(entry: Mapping[str, Any]) -> bytes | None:
    """Validation score against training steps and against training seconds, per family:
    mean over seeds with a min-max band, the target threshold dashed, the step cap dotted and
    the equal-compute budget dotted (from :func:`dltricks.compare.runner.learning_curves`)."""
    curves = entry.get("learning_curves") or {}
    if not curves:
        return None
    target = entry.get("target") or {}
    plt = _plt()
    fig, (ax_s, ax_t) = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, c in enumerate(curves.values()):
        color = f"C{i}"
        label = f"{c['label']} ({len(c['seeds'])} seeds)"
        ax_s.plot(c["steps"], c["mean"], color=color, label=label)
        ax_s.fill_between(c["steps"], c["lo"], c["hi"], color=color, alpha=0.15, linewidth=0)
        if c.get("seconds"):
            ax_t.plot(c["seconds"], c["sec_mean"], color=color, label=label)
            ax_t.fill_between(c["seconds"], c["sec_lo"], c["sec_hi"], color=color, alpha=0.15,
                              linewidth=0)
    for ax in (ax_s, ax_t):
        if target.get("threshold") is not None:
            ax.axhline(target["threshold"], color="k", linestyle="--", linewidth=0.8)
        ax.set_ylabel(f"validation {target.get('metric', 'score')}")
        ax.grid(alpha=0.3)
    if entry.get("step_cap"):
        ax_s.axvline(entry["step_cap"], color="k", linestyle=":", linewidth=0.8)
    if target.get("equal_compute_s"):
        ax_t.axvline(target["equal_compute_s"], color="k", linestyle=":", linewidth=0.8)
    ax_s.set_xlabel("training step")
    ax_t.set_xlabel("training seconds (median step time, 1 thread)")
    ax_s.set_title("against steps (mean, min-max over seeds)")
    ax_t.set_title("against wall-clock training time")
    ax_s.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _target_rows(entry: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per family: seeds solved, steps and seconds to the threshold, best and equal-compute
    score (mean ± sd over seeds; a run that never solved counts as the cap)."""
    cap = entry.get("step_cap")
    header = ["family", "solved", "steps to target", "seconds to target", "best",
              "at equal compute"]
    rows = []
    for r in entry.get("target_summary") or []:
        def ms(key: str, digits: int = 3, row: Mapping[str, Any] = r) -> str:
            v = row.get(key) or {}
            if v.get("mean") is None:
                return "–"
            sd = f" ± {fmt(v['sd'], digits)}" if v.get("sd") is not None else ""
            return f"{fmt(v['mean'], digits)}{sd}"

        solved = f"{r['solved']}/{r['n']}"
        if not r.get("learned"):
            solved += f" (not learned within {cap} steps)" if cap else " (not learned)"
        rows.append([r["label"], solved, ms("steps_to_target", 4), ms("seconds_to_target"),
                     ms("best_val"), ms("val_at_equal_compute")])
    return header, rows


def _figures(out: Path, sections: Mapping[str, Any], lab_out: Path) -> dict[str, bytes]:
    figs: dict[str, bytes] = {}
    for name, fn in (("complexity", complexity_png), ("inference", inference_png),
                     ("edge", edge_png)):
        s = sections.get(name) or {}
        if s.get("status") == "ok":
            figs[name] = fn(s["result"])
    acc = sections.get("accuracy") or {}
    for exp_id in (acc.get("result") or {}):
        path = lab_out / "results" / f"{exp_id}.json"
        if path.is_file():
            try:
                png = figure_png(parse_result(json.loads(path.read_text())))
            except (json.JSONDecodeError, ResultError):
                png = None  # a torn or foreign file: the table still reports the section
            if png:
                figs[exp_id] = png
        curves = learning_curves_png(acc["result"][exp_id])
        if curves:
            figs[f"{exp_id}_curves"] = curves
    return figs


def _complexity_rows(c: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    fams = list(c["families"])
    header = ["L"] + [f"{c['families'][f]['label']} {k}" for f in fams
                      for k in ("fwd ms", "fwd+bwd ms", "MiB")]
    rows = []
    for L in c["lengths"]:
        row = [str(L)]
        for f in fams:
            r = c["families"][f]
            if L in r["lengths"]:
                i = r["lengths"].index(L)
                row += [f"{r['fwd_ms'][i]:.1f}", f"{r['fwd_bwd_ms'][i]:.1f}",
                        f"{r['peak_mib'][i]:.1f}"]
            else:
                row += ["–"] * 3
        rows.append(row)
    return header, rows


def _inference_rows(i: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    fams = list(i["families"])
    prompt = all("prefill_ms" in i["families"][f] for f in fams)
    keys = ("ms/token", "state KiB", "prompt s") if prompt else ("ms/token", "state KiB")
    header = ["context"] + [f"{i['families'][f]['label']} {k}" for f in fams for k in keys]
    rows = []
    for j, ctx in enumerate(i["contexts"]):
        row = [str(ctx)]
        for f in fams:
            r = i["families"][f]
            row += [f"{r['token_ms'][j]:.2f}", f"{r['state_mib'][j] * 1024:.0f}"]
            if prompt:
                row.append(f"{r['prefill_ms'][j] / 1e3:.2f}")
        rows.append(row)
    return header, rows


def _edge_rows(e: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["family", "fp32 KiB", "int8 KiB", "fp32 ms/token", "int8 ms/token",
              "fp32 fwd ms", "int8 fwd ms", "top-1 agreement"]
    rows = [[r["label"], f"{r['fp32']['bytes'] / 1024:.0f}", f"{r['int8']['bytes'] / 1024:.0f}",
             f"{r['fp32']['token_ms']:.2f}", f"{r['int8']['token_ms']:.2f}",
             f"{r['fp32']['forward_ms']:.1f}", f"{r['int8']['forward_ms']:.1f}",
             f"{r['top1_agreement']:.3f}"] for r in e["families"].values()]
    return header, rows


def _accuracy_rows(a: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["experiment", "arm", "params", "metric", "mean", "seeds", "verdict"]
    rows = []
    for exp_id, stored in a.items():
        r = parse_result(stored)
        if r.analysis is None:
            continue
        comps = [c for c in r.analysis.comparisons if c.primary]
        metrics = list(dict.fromkeys(c.metric for c in comps))
        for st in r.analysis.arms.values():
            params = st.metrics.get("params")
            for m in metrics:
                s = st.metrics.get(m)
                rows.append([exp_id, st.label, fmt(params.mean if params else None, 6), m,
                             fmt(s.mean if s else None), str(s.n if s else 0),
                             r.analysis.verdict])
    return header, rows


TABLES = {"complexity": _complexity_rows, "inference": _inference_rows, "edge": _edge_rows,
          "accuracy": _accuracy_rows}
TITLES = {"complexity": "1. Complexity: cost against sequence length",
          "inference": "2. Inference: generation against context length",
          "accuracy": "3-4. Accuracy at matched parameters; hybrid and dynamic depth",
          "edge": "5. Edge: int8 dynamic quantization"}


def write_report(out: str | Path, sections: Mapping[str, Any], *, profile: str,
                 device: str, wall_seconds: float | None = None,
                 lab_out: str | Path | None = None) -> dict[str, Any]:
    """Writes results.json, report.md (+ figures/) and report.html; returns the summary.

    ``lab_out`` is the lab folder holding the accuracy experiments (default ``OUT/lab``).
    Both reports are rendered by the lab's renderer (:func:`dltricks.lab.report.render`).
    """
    out = Path(out)
    lab_out = Path(lab_out) if lab_out is not None else out / "lab"
    claims = evaluate_claims(sections)
    figs = _figures(out, sections, lab_out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, png in figs.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    summary = {"profile": profile, "device": device, "machine": machine_info(),
               "wall_seconds": wall_seconds, "lab_out": str(lab_out),
               "section_seconds": {k: v.get("seconds") for k, v in sections.items()},
               "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "claims": claims,
               "sections": sections}
    atomic_write_text(out / "results.json", json.dumps(summary, indent=1, default=str))
    ctx = _context(summary)
    atomic_write_text(out / "report.md", render("compare_report.md.j2", **ctx))
    atomic_write_text(out / "report.html", render("compare_report.html.j2", **ctx,
                                                  images=b64_images(figs)))
    return summary


def _header(summary: Mapping[str, Any]) -> list[str]:
    m = summary["machine"]
    wall = summary.get("wall_seconds")
    return [f"Profile `{summary['profile']}` on `{summary['device']}`; {m.get('platform')}, "
            f"{m.get('cpu')}, {m.get('cores')} CPUs visible, {m.get('torch_threads')} torch "
            f"threads, load average {m.get('load_average')}, torch {m.get('torch')}, CUDA: "
            f"{m.get('cuda')}.",
            f"Written {summary['written']}" + (f"; measured in {wall:.0f} s." if wall and
                                               math.isfinite(wall) else "."),
            f"Reproduce: `dltricks compare --profile {summary['profile']} --device "
            f"{summary['device']}`."]


def _context(summary: Mapping[str, Any]) -> dict[str, Any]:
    sections = []
    for name in ("complexity", "inference", "accuracy", "edge"):
        s = summary["sections"].get(name)
        if not s:
            continue
        entry: dict[str, Any] = {"name": name, "title": TITLES[name], "error": None,
                                 "header": [], "rows": [], "experiments": []}
        if s.get("status") != "ok":
            entry["error"] = str(s.get("error"))
        else:
            entry["header"], entry["rows"] = TABLES[name](s["result"])
            if name == "accuracy":
                for exp_id, stored in s["result"].items():
                    r = parse_result(stored)
                    t_header, t_rows = _target_rows(stored)
                    entry["experiments"].append({"id": exp_id, "title": r.title,
                                                 "claim": r.claim, "setup": r.setup,
                                                 "notes": r.notes, "target_header": t_header,
                                                 "target_rows": t_rows})
        sections.append(entry)
    return {
        "title": "Mamba vs Transformers, measured", "header_lines": _header(summary),
        "claims_header": ["aspect", "the guide says", "rule", "our measurement", "verdict",
                          "see"],
        "claims_rows": [[c["aspect"], c["guide"], c["rule"], c["evidence"], c["verdict"],
                         c["figure"]] for c in summary["claims"]],
        "sections": sections,
    }


def rebuild_report(out: str | Path) -> dict[str, Any]:
    """Rewrites the report from the stored sections of ``out`` (no measuring)."""
    out = Path(out)
    sections = {}
    for path in sorted((out / "sections").glob("*.json")):
        sections[path.stem] = json.loads(path.read_text())
    if not sections:
        raise FileNotFoundError(f"No stored sections under {out / 'sections'}; run "
                                "`dltricks compare` first.")
    old = {}
    if (out / "results.json").is_file():
        old = json.loads((out / "results.json").read_text())
    return write_report(out, sections, profile=old.get("profile", "?"),
                        device=old.get("device", "cpu"), wall_seconds=old.get("wall_seconds"),
                        lab_out=old.get("lab_out"))


__all__ = ["rebuild_report", "write_report"]
