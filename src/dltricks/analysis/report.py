"""One analysis of a network: per-layer receptive field, parameters and MACs, plus totals.

``analyze_model`` joins ``receptive_field`` and ``layer_costs`` on the traced graph. Rows are
the layers that matter for the table: every module call with parameters or that changes the
receptive field (convs, pooling, upsampling, linear) and every merge of paths (additions,
concatenations); activations, dropout and identities are left out of the rows but not of the
totals. See ``dltricks.analysis.complexity`` for the MAC convention (FLOPs = 2 x MACs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from dltricks.analysis.complexity import (
    count_parameters,
    flop_counter_macs,
    layer_costs,
    measure_latency,
    measure_peak_memory,
)
from dltricks.analysis.receptive_field import propagate_shapes, receptive_field, trace


@dataclass
class LayerRow:
    """One row of the per-layer table (receptive-field values per spatial axis)."""

    index: int
    name: str
    op: str
    kind: str
    shape: tuple[int, ...] | None
    params: int
    macs: int
    rf: tuple[float, ...] | None
    stride: tuple[float, ...] | None
    padding: tuple[float, ...] | None
    center: tuple[float, ...] | None
    aligned: bool
    global_context: bool


@dataclass
class Analysis:
    """Everything ``dltricks analyze`` reports for one model and input shape."""

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerRow]
    params: int
    trainable_params: int
    macs: int
    flop_counter_macs: int
    receptive_field: tuple[float, ...]
    effective_stride: tuple[float, ...]
    effective_padding: tuple[float, ...]
    center: tuple[float, ...]
    aligned: bool
    global_context: bool
    misaligned: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    peak_memory_bytes: int | None = None
    conventions: str = "MACs = multiply-accumulates of conv/linear layers for one forward of " \
        "input_shape; FLOPs = 2 x MACs; receptive field per spatial axis (Araujo et al. 2019)"

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flops"] = self.flops
        return d


def _scalar(v: tuple[float, ...] | None) -> Any:
    """A tuple of equal values as one number (int when whole), else the tuple."""
    if v is None:
        return None
    vals = [int(x) if float(x).is_integer() else round(float(x), 3) for x in v]
    return vals[0] if len(set(vals)) == 1 else vals


def analyze_model(model: nn.Module, input_shape: Sequence[int], name: str = "",
                  timing: bool = False, repeats: int = 5) -> Analysis:
    """Receptive field, parameters and MACs per layer and in total.

    Args:
        model: an fx-traceable network.
        input_shape: (B, C, *spatial).
        name: label for reports.
        timing: also measure latency and peak memory (runs the model ``repeats + 3`` times).
        repeats: latency repeats.
    """
    gm = trace(model)
    propagate_shapes(gm, input_shape)
    rf = receptive_field(gm, input_shape)
    costs = {c.name: c for c in layer_costs(model, input_shape, gm)}
    rows: list[LayerRow] = []
    for lf in rf.layers:
        cost = costs.get(lf.name) if lf.kind not in ("merge", "output", "input") else None
        params = cost.params if cost else 0
        macs = cost.macs if cost else 0
        keep = (lf.kind in ("conv", "pool", "upsample", "merge", "input") or params or macs
                or (lf.kind == "global" and cost is not None))
        if not keep:
            continue
        rows.append(LayerRow(len(rows), lf.name, lf.op, lf.kind, lf.shape, params, macs,
                             lf.size, lf.stride, lf.padding, lf.center, lf.aligned,
                             lf.global_context))
    total_macs = sum(c.macs for c in costs.values())
    result = Analysis(
        model=name or type(model).__name__, input_shape=tuple(input_shape), layers=rows,
        params=count_parameters(model), trainable_params=count_parameters(model, True),
        macs=total_macs, flop_counter_macs=flop_counter_macs(model, input_shape),
        receptive_field=rf.size, effective_stride=rf.stride, effective_padding=rf.padding,
        center=rf.center, aligned=rf.aligned, global_context=rf.global_context,
        misaligned=rf.misaligned,
    )
    if timing:
        result.latency_ms = measure_latency(model, input_shape, repeats=repeats)
        result.peak_memory_bytes = measure_peak_memory(model, input_shape)
    return result


def summary_dict(a: Analysis) -> dict[str, Any]:
    """The totals of an analysis as a flat, JSON-ready dict (one value per equal axes)."""
    return {
        "model": a.model, "input": "x".join(map(str, a.input_shape)), "params": a.params,
        "macs": a.macs, "flops": a.flops, "flop_counter_macs": a.flop_counter_macs,
        "receptive_field": _scalar(a.receptive_field),
        "effective_stride": _scalar(a.effective_stride),
        "effective_padding": _scalar(a.effective_padding), "aligned": a.aligned,
        "global_context": a.global_context, "latency_ms": a.latency_ms,
        "peak_memory_bytes": a.peak_memory_bytes,
    }


def rows_dicts(a: Analysis) -> list[dict[str, Any]]:
    """Per-layer rows as JSON-ready dicts."""
    return [{
        "index": r.index, "name": r.name, "op": r.op, "kind": r.kind,
        "shape": list(r.shape) if r.shape else None, "params": r.params, "macs": r.macs,
        "receptive_field": _scalar(r.rf), "effective_stride": _scalar(r.stride),
        "effective_padding": _scalar(r.padding), "center": _scalar(r.center),
        "aligned": r.aligned, "global_context": r.global_context,
    } for r in a.layers]
