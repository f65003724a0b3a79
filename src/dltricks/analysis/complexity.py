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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import fx, nn

from dltricks.analysis.receptive_field import propagate_shapes, trace, zeros_for
from dltricks.utils.flops import forward_macs, macs_of
from dltricks.utils.mode import eval_mode
from dltricks.utils.timing import time_ms

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

    Works on a model built on the meta device (no compute); see :mod:`dltricks.utils.flops`.
    """
    return forward_macs(model, zeros_for(model, input_shape))


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
    x = torch.randn(tuple(input_shape))
    with eval_mode(model), torch.inference_mode():
        return time_ms(lambda: model(x), repeats=repeats, warmup=warmup, statistic=statistic)


def peak_memory_of(fn: Callable[[], Any]) -> int:
    """Peak extra CPU-allocator bytes while ``fn()`` runs (see the module docstring).

    Works for any work on CPU tensors, e.g. a forward and backward pass: allocations made before
    the call (parameters, inputs) are not counted, and memory freed inside the call is.
    """
    import os

    from torch.profiler import ProfilerActivity, profile

    # kineto logs "USDT: ... profiler_start/stop" on stderr at every profile() (thousands of
    # lines in `make lab`); it reads KINETO_LOG_LEVEL once, at its first use in a process, and 6
    # is above all of its levels (ERROR 4, USDT 5). setdefault: a user's own setting wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
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
    x = torch.randn(tuple(input_shape))

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    with eval_mode(model):
        return peak_memory_of(forward)


def separable_cost(model: nn.Module, x: torch.Tensor) -> dict[str, float | None]:
    """Measured cost of a network's depthwise separable convs against full convolutions.

    For every ``DepthwiseSeparableConv`` in ``model`` (hooked during a forward of ``x[:1]``),
    the MACs of depthwise + pointwise conv (``FlopCounterMode``) and their weights are compared
    with those of one full ``nn.ConvNd`` of the same input, output channels, kernel, stride,
    padding and dilation, run on the same input. The formula of Howard et al. 2017 (MobileNets),
    1/N + 1/k^d (N output channels, k^d kernel positions), is averaged with the full convs' MACs
    as weights.

    Returns:
        ``sep_macs_ratio``, ``sep_params_ratio``, ``sep_formula`` (None without such convs).
    """
    from dltricks.nn.conv_blocks import DepthwiseSeparableConv

    inputs: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: inputs.setdefault(mod, args[0]))
             for m in model.modules() if isinstance(m, DepthwiseSeparableConv)]
    try:
        forward_macs(model, x[:1])
    finally:
        for h in hooks:
            h.remove()
    if not inputs:
        return {"sep_macs_ratio": None, "sep_params_ratio": None, "sep_formula": None}

    sep_macs = full_macs = sep_w = full_w = 0
    formula = 0.0
    for mod, inp in inputs.items():
        dw, pw = mod.depthwise.conv, mod.pointwise.conv
        full = type(dw)(dw.in_channels, pw.out_channels, dw.kernel_size, stride=dw.stride,
                        padding=dw.padding, dilation=dw.dilation, bias=False)
        m_sep = macs_of(lambda dw=dw, pw=pw, inp=inp: pw(dw(inp)))
        m_full = macs_of(lambda full=full, inp=inp: full(inp))
        sep_macs, full_macs = sep_macs + m_sep, full_macs + m_full
        sep_w += dw.weight.numel() + pw.weight.numel()
        full_w += full.weight.numel()
        formula += m_full * (1 / pw.out_channels + 1 / math.prod(dw.kernel_size))
    return {"sep_macs_ratio": sep_macs / full_macs, "sep_params_ratio": sep_w / full_w,
            "sep_formula": formula / full_macs}

