"""Analyses: tips of the guide that a computation checks without training.

Each function is registered in this module's :data:`ANALYSES` with the catalog ids it checks
(meta ``tips=(...)``), takes no required argument, and returns a dict of the computed values and
a boolean ``holds``: whether the tip's claim is true of the computed values. Receptive
fields come from :func:`dltricks.analysis.receptive_field` (Araujo, Norris & Sim 2019) on real
blocks of :mod:`dltricks.nn`, parameters from the modules, MACs from
``torch.utils.flop_counter`` (one multiply-accumulate = 2 FLOPs). Modules are built on the meta
device where no values are needed, so every analysis runs in well under a second.

Run them with :func:`run_analyses`; :func:`coverage` says which tips they check (the catalog's
status and :mod:`dltricks.coverage` ask it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dltricks.registry import Registry

Analysis = Callable[..., dict[str, Any]]

#: the lab's analyses by name, each with meta ``tips`` (catalog ids) and ``description``
ANALYSES: Registry[Analysis] = Registry("analysis")

#: the analyses registered by this module, in definition order
NAMES: list[str] = []


def register_analysis(name: str, tips: tuple[str, ...]) -> Callable[[Analysis], Analysis]:
    """Decorator adding ``fn`` to :data:`ANALYSES` under ``name`` with the tips it checks."""

    def deco(fn: Analysis) -> Analysis:
        ANALYSES.add(name, fn, tips=tips, description=(fn.__doc__ or "").split("\n")[0])
        NAMES.append(name)
        return fn

    return deco


def _rf(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    from dltricks.analysis.receptive_field import receptive_field

    return int(receptive_field(model, input_shape).size[0])


def _params(model: nn.Module) -> int:
    from dltricks.analysis.complexity import count_parameters

    return count_parameters(model)


def _macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    from dltricks.analysis.complexity import flop_counter_macs

    return flop_counter_macs(model, input_shape)


def _convs(spatial_dims: int, channels: int, kernel_size: int, num_layers: int,
           stride: int = 1, dilation: int | list[int] = 1) -> nn.Module:
    """``num_layers`` bias-free, norm-free C → C convolutions (weights only, as in the papers)."""
    from dltricks.nn.conv_blocks import ConvStack

    return ConvStack(spatial_dims, channels, channels, kernel_size, num_layers, stride=stride,
                     dilation=dilation, norm=None, act="relu")


def _weights(model: nn.Module) -> int:
    """Convolution weights only (the stacks here have biases, which the papers leave out)."""
    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d))


@register_analysis("rf_two_3x3", tips=("rf-two-3x3", "cnn-stacked-3x3"))
def rf_two_3x3(channels: int = 8, size: int = 32) -> dict[str, Any]:
    """Receptive field of two stacked 3x3 convs and of one 5x5 (both 5)."""
    stack = _rf(_convs(2, channels, 3, 2), (1, channels, size, size))
    large = _rf(_convs(2, channels, 5, 1), (1, channels, size, size))
    return {"rf_two_3x3": stack, "rf_one_5x5": large, "holds": stack == large == 5}


@register_analysis("rf_three_3x3", tips=("rf-three-3x3", "cnn-stacked-3x3"))
def rf_three_3x3(channels: int = 8, size: int = 32) -> dict[str, Any]:
    """Receptive field of three stacked 3x3 convs and of one 7x7 (both 7)."""
    stack = _rf(_convs(2, channels, 3, 3), (1, channels, size, size))
    large = _rf(_convs(2, channels, 7, 1), (1, channels, size, size))
    return {"rf_three_3x3": stack, "rf_one_7x7": large, "holds": stack == large == 7}


@register_analysis("stack_vs_large_cost",
                   tips=("cnn-stacked-3x3", "cnn-large-kernels-costly", "small-kernels-advantages"))
def stack_vs_large_cost(channels: int = 64, size: int = 56) -> dict[str, Any]:
    """Weights and MACs of n 3x3 C → C convs against the one (2n+1)² conv of the same field.

    VGG's figures (Simonyan & Zisserman 2015): 27 C² against 49 C² for a 7x7 field, 18 C²
    against 25 C² for 5x5.
    """
    out: dict[str, Any] = {}
    holds = True
    with torch.device("meta"):
        pairs = {n: (_convs(2, channels, 3, n), _convs(2, channels, 2 * n + 1, 1)) for n in (2, 3)}
    for n, (stack, large) in pairs.items():
        k = 2 * n + 1
        shape = (1, channels, size, size)
        ws, wl = _weights(stack), _weights(large)
        ms, ml = _macs(stack, shape), _macs(large, shape)
        out |= {f"weights_{n}x3x3": ws, f"weights_{k}x{k}": wl,
                f"macs_{n}x3x3": ms, f"macs_{k}x{k}": ml,
                f"weight_ratio_{n}x3x3": ws / wl}
        holds &= ws == 9 * n * channels**2 and wl == k * k * channels**2 and ws < wl and ms < ml
    return out | {"holds": holds}


@register_analysis("kernel_costs_3d", tips=("small-kernels-fewer-params",
                                            "cnn-large-kernels-costly"))
def kernel_costs_3d(channels: int = 32, size: int = 32) -> dict[str, Any]:
    """Weights and MACs of k^d kernels in 2-D and 3-D, and the saving of a 3x3(x3) stack.

    A 3-D kernel costs k³ weights per channel pair: 27 (3³), 125 (5³), 343 (7³). Three 3x3x3
    layers replace one 7x7x7 with 81/343 = 24% of the weights, against 27/49 = 55% in 2-D: the
    saving is larger in 3-D.
    """
    out: dict[str, Any] = {}
    with torch.device("meta"):
        for dims in (2, 3):
            shape = (1, channels) + (size,) * dims
            for k in (3, 5, 7):
                conv = _convs(dims, channels, k, 1)
                out[f"weights_{dims}d_k{k}"] = _weights(conv)
                out[f"macs_{dims}d_k{k}"] = _macs(conv, shape)
            stack = _convs(dims, channels, 3, 3)
            out[f"weights_{dims}d_3x3_stack3"] = _weights(stack)
            out[f"macs_{dims}d_3x3_stack3"] = _macs(stack, shape)
            out[f"stack_saving_{dims}d"] = (out[f"weights_{dims}d_3x3_stack3"]
                                            / out[f"weights_{dims}d_k7"])
    holds = (out["weights_3d_k3"] < out["weights_3d_k5"] < out["weights_3d_k7"]
             and out["macs_3d_k3"] < out["macs_3d_k5"] < out["macs_3d_k7"]
             and out["stack_saving_3d"] < out["stack_saving_2d"] < 1)
    return out | {"holds": holds}


@register_analysis("kernel_rf_growth", tips=("kernel-rf-growth",))
def kernel_rf_growth(layers: int = 4, channels: int = 4, size: int = 64) -> dict[str, Any]:
    """Receptive field after 1..``layers`` stride-1 layers of kernel 3, 5 and 7: 1 + L (k - 1),
    so larger kernels grow it faster per layer."""
    growth = {k: [_rf(_convs(2, channels, k, n), (1, channels, size, size))
                  for n in range(1, layers + 1)] for k in (3, 5, 7)}
    formula = {k: [1 + n * (k - 1) for n in range(1, layers + 1)] for k in (3, 5, 7)}
    holds = growth == formula and all(a < b < c for a, b, c in zip(*growth.values(),
                                                                     strict=True))
    return {f"rf_k{k}": v for k, v in growth.items()} | {"holds": holds}


@register_analysis("stride_pool_rf", tips=("stride-pool-rf",))
def stride_pool_rf(channels: int = 4, size: int = 64) -> dict[str, Any]:
    """Receptive field of four 3x3 convs with and without a 2x downsampling after the second:
    9 without, 14 with a 2x2 max pool, 11 when the third conv has stride 2 (the layers after
    the downsampling step twice as far on the input)."""
    from dltricks.nn.factory import get_pool

    shape = (1, channels, size, size)
    plain = _rf(_convs(2, channels, 3, 4), shape)
    pooled = _rf(nn.Sequential(_convs(2, channels, 3, 2), get_pool("max", 2)(2),
                               _convs(2, channels, 3, 2)), shape)
    strided = _rf(nn.Sequential(_convs(2, channels, 3, 2), _convs(2, channels, 3, 2, stride=2)),
                  shape)
    return {"rf_plain": plain, "rf_maxpool": pooled, "rf_stride": strided,
            "holds": plain < pooled and plain < strided}


@register_analysis("stride_pool_cost", tips=("stride-pool-cost",))
def stride_pool_cost(channels: int = 32, size: int = 32) -> dict[str, Any]:
    """MACs of the same two 3x3 convs after a 2x downsampling, relative to without: 1/4 in
    2-D, 1/8 in 3-D (the maps have 2^d times fewer positions)."""
    out: dict[str, Any] = {}
    with torch.device("meta"):
        for dims in (2, 3):
            s = size if dims == 2 else size // 2
            full = _macs(_convs(dims, channels, 3, 2), (1, channels) + (s,) * dims)
            half = _macs(_convs(dims, channels, 3, 2), (1, channels) + (s // 2,) * dims)
            out[f"macs_{dims}d_full"], out[f"macs_{dims}d_downsampled"] = full, half
            out[f"ratio_{dims}d"] = half / full
    holds = out["ratio_2d"] == 1 / 4 and out["ratio_3d"] == 1 / 8
    return out | {"holds": holds}


@register_analysis("dwsep_cost", tips=("dwsep-cheaper",))
def dwsep_cost(in_channels: int = 64, out_channels: int = 128, kernel_size: int = 3,
               size: int = 56) -> dict[str, Any]:
    """Weights and MACs of a depthwise separable conv against a full conv; the ratio equals
    Howard et al.'s 1/N + 1/k² (N output channels)."""
    from dltricks.nn.conv_blocks import DepthwiseSeparableConv

    shape = (1, in_channels, size, size)
    with torch.device("meta"):
        sep = DepthwiseSeparableConv(2, in_channels, out_channels, kernel_size, norm=None)
        full = nn.Conv2d(in_channels, out_channels, kernel_size, padding="same", bias=False)
    ws = sep.depthwise.conv.weight.numel() + sep.pointwise.conv.weight.numel()
    wf = full.weight.numel()
    ms, mf = _macs(sep, shape), _macs(full, shape)
    formula = 1 / out_channels + 1 / kernel_size**2
    return {"weights_separable": ws, "weights_full": wf, "macs_separable": ms, "macs_full": mf,
            "macs_ratio": ms / mf, "weights_ratio": ws / wf, "formula": formula,
            "holds": abs(ms / mf - formula) < 1e-12 and abs(ws / wf - formula) < 1e-12}


@register_analysis("atrous_rf", tips=("atrous-rf-resolution",))
def atrous_rf(channels: int = 4, size: int = 64) -> dict[str, Any]:
    """Three 3x3 convs with dilations 1, 2, 4 see 15 pixels at full resolution (effective
    stride 1: one output per input pixel), against 7 without dilation; with two 2x2 max pools
    between the plain convs instead the field is 18, but at stride 4 (a quarter of the
    resolution per axis)."""
    from dltricks.analysis.receptive_field import receptive_field
    from dltricks.nn.factory import get_pool

    shape = (1, channels, size, size)
    dilated = receptive_field(_convs(2, channels, 3, 3, dilation=[1, 2, 4]), shape)
    plain = receptive_field(_convs(2, channels, 3, 3), shape)
    pool = get_pool("max", 2)
    pooled_net = nn.Sequential(_convs(2, channels, 3, 1), pool(2), _convs(2, channels, 3, 1),
                               pool(2), _convs(2, channels, 3, 1))
    pooled = receptive_field(pooled_net, shape)
    out = {"rf_dilated": int(dilated.size[0]), "stride_dilated": int(dilated.stride[0]),
           "rf_plain": int(plain.size[0]), "rf_pooled": int(pooled.size[0]),
           "stride_pooled": int(pooled.stride[0])}
    out["holds"] = (out["rf_dilated"] > out["rf_plain"] and out["stride_dilated"] == 1
                    and out["stride_pooled"] == 4)
    return out


@register_analysis("same_padding", tips=("cnn-padding",))
def same_padding(size: int = 8) -> dict[str, Any]:
    """'Same' padding keeps the size of a 3x3 conv's output (8 → 8; 'valid' gives 6) and lets
    the corner pixel reach 4 output units (1 without padding)."""
    from dltricks.nn.factory import ConvNormAct

    out: dict[str, Any] = {}
    for pad in ("same", "valid"):
        conv = ConvNormAct(2, 1, 1, 3, padding=pad, norm=None, act=None, bias=False)
        nn.init.ones_(conv.conv.weight)
        x = torch.zeros(1, 1, size, size)
        x[0, 0, 0, 0] = 1.0  # the corner pixel alone: the output units it feeds are non-zero
        with torch.no_grad():
            y = conv(x)
        out[f"size_{pad}"] = int(y.shape[-1])
        out[f"corner_units_{pad}"] = int((y != 0).sum())
    out["holds"] = (out["size_same"] == size and out["size_valid"] == size - 2
                    and out["corner_units_same"] > out["corner_units_valid"])
    return out


@register_analysis("spp_fixed_length", tips=("spp-multiscale",))
def spp_fixed_length(channels: int = 16, sizes: tuple[int, ...] = (6, 8, 13, 32)
                     ) -> dict[str, Any]:
    """Spatial pyramid pooling (levels 1, 2, 4) gives C (1 + 4 + 16) features for every input
    size, the property that frees a CNN from a fixed input size (He et al. 2014)."""
    from dltricks.nn.pool import SpatialPyramidPooling

    spp = SpatialPyramidPooling(2, (1, 2, 4))
    lengths = {s: int(spp(torch.zeros(1, channels, s, s)).shape[1]) for s in sizes}
    expected = spp.output_features(channels)
    return {"lengths": lengths, "expected": expected,
            "holds": all(v == expected == 21 * channels for v in lengths.values())}


@register_analysis("dual_pathway_context", tips=("multiscale-local-global",
                                                 "multiscale-two-views"))
def dual_pathway_context(channels: int = 4, size: int = 36) -> dict[str, Any]:
    """Receptive field of a DeepMedic-style network with and without its low-resolution
    pathway: 9 for four 3x3 convs at full resolution, 27 once the same convs also run on a
    3x downsampled copy (3 + 4 · 2 · 3 = 27)."""
    from dltricks.models import create_model

    kw = dict(in_channels=1, num_classes=2, spatial_dims=2, channels=[channels] * 4,
              fc_channels=[channels])
    dual = _rf(create_model("deepmedic", **kw), (1, 1, size, size))
    single = _rf(create_model("deepmedic", low_pathway=False, **kw), (1, 1, size, size))
    return {"rf_single": single, "rf_dual": dual, "holds": single == 9 and dual == 27}


def coverage() -> dict[str, tuple[str, ...]]:
    """The catalog tips each analysis checks: ``{analysis name: tip ids}``."""
    return {n: tuple(ANALYSES.meta(n)["tips"]) for n in NAMES}


def run_analyses(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Runs the analyses of this module (all of :data:`NAMES`, or ``names``) with their default
    arguments and returns their results by name."""
    return {n: ANALYSES.get(n)() for n in (names or NAMES)}


__all__ = ["ANALYSES", "NAMES", "coverage", "register_analysis", "run_analyses"]
