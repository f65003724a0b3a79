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

from dltricks.cli.common import (
    complete_models,
    complete_recipes,
    console,
    err_console,
    friendly_errors,
    parse_device,
)


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


DEFAULT_IMAGE_INPUT = (1, 3, 224, 224)


def _registry():
    # importing the modules registers the models even before dltricks.models imports them
    import dltricks.models  # noqa: F401
    from dltricks.models import deepmedic, reference, unet  # noqa: F401
    from dltricks.models.registry import MODELS

    return MODELS


def _build(name: str, kwargs: dict[str, Any]):
    from dltricks.models.registry import create_model

    _registry()
    return create_model(name, **kwargs)


def default_input(name: str) -> tuple[int, ...]:
    """The input shape analysed when ``--input`` is not given: 1x3x224x224 for 2-D image
    models, otherwise the registry example's input with batch 1 (e.g. 1x1x40 for ``cnn1d``).

    Raises:
        ValueError: the model takes token ids, which the analysis (float inputs) cannot trace.
    """
    example = _registry().meta(name).get("example", {})
    shape = tuple(example.get("input", DEFAULT_IMAGE_INPUT))
    if example.get("dtype") == "long" or len(shape) < 3:
        raise ValueError(f"Model {name!r} takes token ids; analyze traces networks of float "
                         "inputs (B x C x spatial) only.")
    return DEFAULT_IMAGE_INPUT if len(shape) == 4 else (1, *shape[1:])


def fill_kwargs(name: str, shape: tuple[int, ...], given: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, str]]:
    """The constructor arguments of model ``name`` for input ``shape``: the given ones, plus
    ``in_channels``, ``in_features`` and ``spatial_dims`` read from the shape and any other
    required argument (``num_classes``, ...) from the model's registry example.

    Returns:
        (kwargs, where each filled-in value came from).
    """
    import inspect
    import math

    from dltricks.models.registry import model_signature

    registry = _registry()
    params = model_signature(name).parameters
    example = registry.meta(name).get("example", {}).get("kwargs", {})
    from_shape = {"in_channels": shape[1], "in_features": math.prod(shape[1:]),
                  "spatial_dims": len(shape) - 2}
    out, notes = dict(given), {}
    for key, p in params.items():
        if key in out or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if key in from_shape and (p.default is inspect.Parameter.empty or key == "spatial_dims"):
            if key == "spatial_dims" and p.default == from_shape[key]:
                continue
            out[key], notes[key] = from_shape[key], "--input"
        elif p.default is inspect.Parameter.empty and key in example:
            out[key], notes[key] = example[key], "registry example"
    return out, notes


def _from_recipe(recipe: str, kwargs: dict[str, Any]
                 ) -> tuple[str, dict[str, Any], tuple[int, ...]]:
    """(model name, model kwargs sized from the recipe's data, one input's shape)."""
    from dltricks.data import create_dataset
    from dltricks.train.recipe import resolve_recipe
    from dltricks.train.trainer import model_kwargs_for

    r = resolve_recipe(recipe, [])
    data = create_dataset(r.data.name, seed=r.seed, **r.data.kwargs)
    if data.vocab_size is not None:
        raise ValueError(f"Recipe {r.name!r} trains on token ids ({data.name}); analyze traces "
                         "networks of float inputs (B x C x spatial) only.")
    name = r.model.name
    return name, model_kwargs_for(name, data, {**r.model.kwargs, **kwargs}), (1,
                                                                            *data.input_shape)


def _device_timing(net, shape: tuple[int, ...], device, repeats: int = 5) -> tuple[float, int]:
    """(median forward ms, peak extra allocated bytes) of one inference forward on a CUDA or
    MPS ``device``; the CPU path is :func:`dltricks.analysis.complexity.measure_latency`."""
    import torch

    from dltricks.utils.mode import eval_mode
    from dltricks.utils.timing import time_ms

    x = torch.randn(shape, device=device)
    with eval_mode(net), torch.inference_mode():
        ms = time_ms(lambda: net(x), repeats=repeats, warmup=3, device=device,
                     statistic="median")
        if device.type != "cuda":
            return ms, None
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        net(x)
        torch.cuda.synchronize(device)
        return ms, torch.cuda.max_memory_allocated(device) - base


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
    model: str = typer.Argument(None, help="registered model name (`dltricks models` lists "
                                "them); optional with --recipe", autocompletion=complete_models),
    input: str = typer.Option(None, "--input", help="input shape BxCx(spatial) [default: "
                              "1x3x224x224 for 2-D image models, else the model's example, "
                              "or one sample of --recipe's data]"),
    recipe: str = typer.Option(None, "--recipe", help="take the model, its kwargs and the "
                               "input shape from a recipe (name or YAML path)",
                               autocompletion=complete_recipes),
    compare: str = typer.Option(None, help="second model to put side by side",
                                autocompletion=complete_models),
    json_out: bool = typer.Option(False, "--json", help="print machine-readable results"),
    plots: Path = typer.Option(None, "--plots", help="folder for RF-growth and MACs plots"),
    kw: list[str] = typer.Option(None, "--kw", help="model kwarg key=value (repeatable)"),
    timing: bool = typer.Option(False, help="also measure latency and peak memory here"),
    device: str = typer.Option("cpu", "--device", help="where --timing runs: cpu, cuda, "
                               "cuda:N, mps or auto"),
    erf: bool = typer.Option(False, help="with --plots: gradient-based effective RF heatmap"),
    layers: bool = typer.Option(True, help="print the per-layer table"),
) -> None:
    """Per-layer receptive field, stride, padding, parameters and MACs of a model.

    Arguments a model needs and the user did not give are filled in and reported: in_channels,
    in_features and spatial_dims from --input, num_classes (and the like) from the model's
    registry example.

    Examples:

      dltricks analyze resnet50_v1

      dltricks analyze small_cnn --input 1x1x8x8 --compare cnn3d

      dltricks analyze --recipe digits_cnn --timing

      dltricks analyze unet --input 1x1x128x128 --kw channels=[16,32,64] --json
    """
    import torch

    from dltricks.analysis.report import analyze_model, rows_dicts, summary_dict

    with friendly_errors():
        dev = parse_device(device)
        kwargs = parse_kwargs(kw)
        shape = parse_shape(input) if input else None
        if recipe:
            if model:
                raise ValueError("Give a model name or --recipe, not both.")
            model, kwargs, recipe_shape = _from_recipe(recipe, kwargs)
            shape = shape or recipe_shape
        elif not model:
            raise ValueError("Give a model name (see `dltricks models`) or --recipe NAME.")
        shape = shape or default_input(model)
        names = [model] + ([compare] if compare else [])
        results, used_kwargs = [], []
        for i, name in enumerate(names):  # --compare gets --kw only, not the recipe's kwargs
            filled, notes = fill_kwargs(name, shape, kwargs if i == 0 else parse_kwargs(kw))
            if notes:
                err_console.print(f"{name}: " + ", ".join(f"{k}={filled[k]} (from {v})"
                                                          for k, v in notes.items()),
                                  highlight=False)
            net = None
            if not (timing or erf):  # shapes, MACs and fields need no compute: meta device
                with torch.device("meta"):
                    net = _build(name, filled)
                try:
                    analysis = analyze_model(net, shape, name)
                except (NotImplementedError, RuntimeError):  # an op without a meta kernel
                    net = None
            if net is None or timing or erf:
                net = _build(name, filled)
                on_cpu = dev.type == "cpu"
                analysis = analyze_model(net, shape, name, timing=timing and on_cpu)
                if timing and not on_cpu:
                    analysis.latency_ms, analysis.peak_memory_bytes = _device_timing(
                        net.to(dev), shape, dev)
                    net.to("cpu")
            results.append((net, analysis))
            used_kwargs.append(filled)
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
    summaries = [dict(summary_dict(a), kwargs=kw_used)
                 for (_, a), kw_used in zip(results, used_kwargs, strict=True)]
    if timing:
        for s in summaries:
            s["device"] = str(dev)
    # wide tables are unreadable at rich's 80-column default for pipes and files
    out = console if console.is_terminal else Console(width=160)
    if json_out:
        payload = [dict(s, layers=rows_dicts(a)) for s, (_, a) in zip(summaries, results,
                                                                         strict=True)]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=1))
        return
    if layers:
        for _, a in results:
            out.print(_layer_table(rows_dicts(a), f"{a.model} at {'x'.join(map(str, shape))}"))
    out.print(_summary_table(summaries))
    for s, (_, a) in zip(summaries, results, strict=True):
        if a.misaligned:
            console.print(f"[yellow]{s['model']}: misaligned merges[/] (paths with different "
                          f"centres or strides): {', '.join(a.misaligned[:5])}")
    if plots is not None:
        console.print("plots: " + ", ".join(str(p) for p in written))
