"""Parameters, multiply-accumulates, latency and peak memory of a network.

Conventions:

* **MACs** (multiply-accumulates) count the products of convolutions (transposed ones too),
  linear layers and matrix products for *one forward pass of the given input shape* (batch
  included). A conv's MACs are ``out.numel() * in_channels / groups * prod(kernel_size)``, a
  linear layer's ``out.numel() * in_features``. Biases, normalisation, activations, pooling and
  additions are not counted (they are a few percent at most in CNNs); that is the convention of
  the papers' "mult-adds" (MobileNet) and of most tables. **FLOPs = 2 x MACs.**
* Totals are cross-checked with ``torch.utils.flop_counter.FlopCounterMode`` (which counts
  2 FLOPs per MAC of the same ops): ``flop_counter_macs`` is its FLOPs / 2 and equals the sum of
  the per-layer MACs for networks made of the layers above.
* **Parameters** per layer are a leaf module's own parameters; the total is
  ``sum(p.numel() for p in model.parameters())`` (shared parameters once).
* **Latency**: median (or minimum) wall time of ``repeats`` forward passes under
  ``torch.inference_mode`` after ``warmup`` passes, on this machine's CPU with
  ``torch.get_num_threads()`` threads.
* **Peak memory**: ``torch.profiler`` with ``profile_memory=True`` records the CPU allocator's
  allocations and frees during one inference forward; the peak of their running sum, in time
  order, is the extra memory the forward needed at its highest point (activations and
  workspace; parameters and the input, allocated before, are not included). This is the torch
  allocator's view, not the process's (``tracemalloc`` would miss torch's C++ allocations).

Axis letters: B batch, C channels, *spatial the spatial axes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import fx, nn

from dltricks.analysis.receptive_field import propagate_shapes, trace, zeros_for

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters, shared ones counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def module_macs(m: nn.Module, in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """MACs of one leaf module for the given input and output shapes (0 for uncounted ops)."""
    if isinstance(m, _CONVS):
        return math.prod(out_shape) * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, _TRANSPOSED):
        return math.prod(in_shape) * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return math.prod(out_shape) * m.in_features
    return 0


@dataclass
class LayerCost:
    """Parameters and MACs of one leaf module call."""

    name: str
    op: str
    params: int
    macs: int
    shape: tuple[int, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_costs(model: nn.Module, input_shape: Sequence[int],
                gm: fx.GraphModule | None = None) -> list[LayerCost]:
    """Per-module-call parameters and MACs, in execution order.

    Args:
        model: an fx-traceable network.
        input_shape: (B, C, *spatial).
        gm: an already traced and shape-propagated graph of ``model`` (saves a forward).
    """
    if gm is None:
        gm = trace(model)
        propagate_shapes(gm, input_shape)
    seen: set[str] = set()
    out: list[LayerCost] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = gm.get_submodule(str(node.target))
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None
        first = next((a for a in node.all_input_nodes if "tensor_meta" in a.meta), None)
        in_shape = tuple(first.meta["tensor_meta"].shape) if first is not None else ()
        params = 0 if node.target in seen else sum(p.numel() for p in m.parameters())
        seen.add(str(node.target))
        out.append(LayerCost(str(node.target), type(m).__name__, params,
                             module_macs(m, in_shape, shape or ()), shape))
    return out


def flop_counter_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Total MACs of one forward by ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2).

    Works on a model built on the meta device (no compute).
    """
    from torch.utils.flop_counter import FlopCounterMode

    training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(zeros_for(model, input_shape))
    finally:
        model.train(training)
    return counter.get_total_flops() // 2


def measure_latency(model: nn.Module, input_shape: Sequence[int], repeats: int = 10,
                    warmup: int = 2, statistic: str = "median") -> float:
    """Forward time in milliseconds (inference mode, eval, this machine's CPU).

    Args:
        model: the network.
        input_shape: (B, C, *spatial).
        repeats: timed forwards.
        warmup: untimed forwards first.
        statistic: ``"median"`` or ``"min"`` of the repeats; on a shared machine noise only
            adds time, so the minimum is the steadier figure.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}.")
    if statistic not in ("median", "min"):
        raise ValueError(f"statistic must be 'median' or 'min', got {statistic!r}.")
    training = model.training
    model.eval()
    x = torch.randn(tuple(input_shape))
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        model.train(training)
    return statistics.median(times) if statistic == "median" else min(times)


def peak_memory_of(fn: Callable[[], Any]) -> int:
    """Peak extra CPU-allocator bytes while ``fn()`` runs (see the module docstring).

    Works for any work on CPU tensors, e.g. a forward and backward pass: allocations made before
    the call (parameters, inputs) are not counted, and memory freed inside the call is.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    items = []
    for e in prof.events():
        # "[memory]" events are frees/allocations outside an op; an op's own are its self usage
        usage = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if usage:
            items.append((e.time_range.start, usage))
    items.sort()
    current = peak = 0
    for _, usage in items:
        current += usage
        peak = max(peak, current)
    return peak


def measure_peak_memory(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Peak extra CPU-allocator bytes of one inference forward (see the module docstring)."""
    training = model.training
    model.eval()
    x = torch.randn(tuple(input_shape))

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    try:
        return peak_memory_of(forward)
    finally:
        model.train(training)
