"""``dltricks analyze``: receptive field, parameters and MACs of a registered model, per layer.

Conventions (see ``dltricks.analysis.complexity``): MACs are the multiply-accumulates of conv
and linear layers for one forward of ``--input``; FLOPs = 2 x MACs. Receptive-field values are
per spatial axis (one number when all axes agree), from the traced graph (Araujo et al. 2019).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dltricks.cli.common import console, friendly_errors


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x3x224x224"`` → ``(1, 3, 224, 224)``.

    Raises:
        ValueError: not 3 to 5 positive integers separated by ``x``.
    """
    try:
        shape = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        shape = ()
    if not 3 <= len(shape) <= 5 or any(s < 1 for s in shape):
        raise ValueError(
            f"--input must look like 1x3x224x224 (batch x channels x 1-3 spatial sizes), got "
            f"{text!r}."
        )
    return shape


def parse_kwargs(items: list[str] | None) -> dict[str, Any]:
    """``["channels=64", "dilation=[1,2,4]"]`` → a dict with YAML-parsed values."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"Model option {item!r} is not of the form key=value.")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _build(name: str, kwargs: dict[str, Any]):
    # importing the modules registers the models even before dltricks.models imports them
    import dltricks.models  # noqa: F401
    from dltricks.models import deepmedic, reference, unet  # noqa: F401
    from dltricks.models.registry import create_model

    return create_model(name, **kwargs)


def _fmt(v: Any) -> str:
    if v is None:
        return "global"
    if isinstance(v, list):
        return "x".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _layer_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col in ("#", "layer", "op", "out shape", "params", "MACs", "RF", "stride", "padding",
                "centre"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for r in rows:
        note = "" if r["aligned"] else " (misaligned)"
        note += " +global" if r["global_context"] and r["receptive_field"] is not None else ""
        table.add_row(str(r["index"]), r["name"], r["op"],
                      "x".join(map(str, r["shape"][1:])) if r["shape"] else "-",
                      f"{r['params']:,}", f"{r['macs']:,}", _fmt(r["receptive_field"]) + note,
                      _fmt(r["effective_stride"]), _fmt(r["effective_padding"]),
                      _fmt(r["center"]))
    return table


def _summary_table(summaries: list[dict]) -> Table:
    table = Table(title="totals (MACs: conv + linear multiply-accumulates; FLOPs = 2 x MACs)")
    table.add_column("")
    for s in summaries:
        table.add_column(s["model"], justify="right")
    for key, label in (("input", "input"), ("params", "parameters"), ("macs", "MACs"),
                       ("flops", "FLOPs"), ("receptive_field", "receptive field"),
                       ("effective_stride", "effective stride"),
                       ("effective_padding", "effective padding"), ("aligned", "aligned merges"),
                       ("global_context", "global context"), ("latency_ms", "latency (ms)"),
                       ("peak_memory_bytes", "peak memory (MiB)")):
        vals = []
        for s in summaries:
            v = s[key]
            if key == "peak_memory_bytes" and v is not None:
                v = f"{v / 2**20:.1f}"
            elif key == "latency_ms" and v is not None:
                v = f"{v:.1f}"
            elif isinstance(v, int) and not isinstance(v, bool):
                v = f"{v:,}"
            vals.append(_fmt(v) if v is not None else "-")
        table.add_row(label, *vals)
    return table


def analyze(
    model: str = typer.Argument(..., help="registered model name (see the model registry)"),
    input: str = typer.Option("1x3x224x224", "--input", help="input shape BxCx(spatial)"),
    compare: str = typer.Option(None, help="second model to put side by side"),
    json_out: bool = typer.Option(False, "--json", help="print machine-readable results"),
    plots: Path = typer.Option(None, "--plots", help="folder for RF-growth and MACs plots"),
    kw: list[str] = typer.Option(None, "--kw", help="model kwarg key=value (repeatable)"),
    timing: bool = typer.Option(False, help="also measure latency and peak memory here"),
    erf: bool = typer.Option(False, help="with --plots: gradient-based effective RF heatmap"),
    layers: bool = typer.Option(True, help="print the per-layer table"),
) -> None:
    """Per-layer receptive field, stride, padding, parameters and MACs of a model."""
    import torch

    from dltricks.analysis.report import analyze_model, rows_dicts, summary_dict

    with friendly_errors():
        shape = parse_shape(input)
        kwargs = parse_kwargs(kw)
        names = [model] + ([compare] if compare else [])
        results = []
        for name in names:
            net = None
            if not (timing or erf):  # shapes, MACs and fields need no compute: meta device
                with torch.device("meta"):
                    net = _build(name, kwargs)
                try:
                    analysis = analyze_model(net, shape, name)
                except (NotImplementedError, RuntimeError):  # an op without a meta kernel
                    net = None
            if net is None or timing or erf:
                net = _build(name, kwargs)
                analysis = analyze_model(net, shape, name, timing=timing)
            results.append((net, analysis))
        if plots is not None:
            from dltricks.analysis.plots import plot_erf, plot_macs_by_layer, plot_rf_growth

            plots.mkdir(parents=True, exist_ok=True)
            written = [plot_rf_growth([a for _, a in results], plots / "rf_growth.png"),
                       plot_macs_by_layer([a for _, a in results], plots / "macs_by_layer.png")]
            if erf:
                from dltricks.analysis.erf import effective_receptive_field

                for net, a in results:
                    heat = effective_receptive_field(net, (1, *shape[1:]))
                    written.append(plot_erf(heat, plots / f"erf_{a.model}.png",
                                            f"{a.model}: effective receptive field"))
    summaries = [summary_dict(a) for _, a in results]
    # wide tables are unreadable at rich's 80-column default for pipes and files
    out = console if console.is_terminal else Console(width=160)
    if json_out:
        payload = [dict(s, layers=rows_dicts(a)) for s, (_, a) in zip(summaries, results,
                                                                         strict=True)]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=1))
        return
    if layers:
        for _, a in results:
            out.print(_layer_table(rows_dicts(a), f"{a.model} at {input}"))
    out.print(_summary_table(summaries))
    for s, (_, a) in zip(summaries, results, strict=True):
        if a.misaligned:
            console.print(f"[yellow]{s['model']}: misaligned merges[/] (paths with different "
                          f"centres or strides): {', '.join(a.misaligned[:5])}")
    if plots is not None:
        console.print("plots: " + ", ".join(str(p) for p in written))
