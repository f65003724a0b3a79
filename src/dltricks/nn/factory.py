"""Sub-layers by name: normalisation, activation, convolution, dropout and pooling factories.

Blocks take ``norm="batch"`` or ``act="gelu"`` instead of a class, so a recipe can switch a
whole network's normalisation with one string (the timm/MONAI pattern). ``ConvNormAct`` is the
conv → norm → activation unit most CNNs here are built from; the order of norm and activation
is an option because the guide's "batch norm before the activation" tip (Ioffe & Szegedy 2015,
"Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift")
is something the lab measures rather than assumes.

Normalisations (``get_norm``), for features of shape (B, C, *spatial):

* ``"batch"``: BatchNorm{1,2,3}d, statistics over (B, *spatial) per channel (Ioffe & Szegedy 2015).
* ``"layer"``: layer normalisation as defined by Ba et al. 2016 ("Layer Normalization") applied to
  conv maps: statistics over (C, *spatial) per sample, with a per-channel affine. This is
  ``GroupNorm(1, C)``. It is *not* the channels-only LayerNorm of ConvNeXt (statistics over C at
  each position). On (B, C) features it is the usual LayerNorm over C.
* ``"instance"``: InstanceNorm{1,2,3}d(affine=True), statistics over *spatial per sample and
  channel (Ulyanov et al. 2016).
* ``"group"``: GroupNorm (Wu & He 2018), ``num_groups`` from ``("group", {"num_groups": 8})`` or by
  default the largest divisor of C that is at most 32.
* ``"none"`` / ``None``: identity.

Axis letters: B batch, C channels, *spatial the 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

NormSpec = str | None | type[nn.Module] | Callable[[int], nn.Module] | tuple[Any, dict[str, Any]]
ActSpec = str | None | type[nn.Module] | Callable[[], nn.Module] | tuple[Any, dict[str, Any]]

NORMS = ("batch", "layer", "instance", "group", "none")
ACTS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
    "none": nn.Identity,
}
POOLS = ("max", "avg", "adaptive_max", "adaptive_avg")


def _check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")


@torch.fx.wrap
def check_spatial_divisible(x: Tensor, multiple: int, what: str) -> None:
    """Raises ``ValueError`` unless every spatial size of ``x`` (B, C, *spatial) is a multiple
    of ``multiple``; ``what`` names the block and why, e.g. ``"UNet (2 ** poolings)"``.

    A leaf call in torch.fx traces (sizes are not symbolic there). ``torch.fx.wrap`` patches the
    name in the globals of the module that wraps it, so a module that imports this function
    must also call ``torch.fx.wrap("check_spatial_divisible")`` at its top level.
    """
    if any(s % multiple for s in x.shape[2:]):
        raise ValueError(f"{what} needs spatial sizes divisible by {multiple}, got "
                         f"{tuple(x.shape[2:])}.")


def _split_spec(spec: Any) -> tuple[Any, dict[str, Any]]:
    """Splits ``(name_or_class, kwargs)`` into its parts; anything else has no kwargs."""
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[1], dict):
            raise ValueError(
                f"A tuple layer spec must be (name_or_class, kwargs_dict), got {spec!r}."
            )
        return spec[0], dict(spec[1])
    return spec, {}


def default_num_groups(num_channels: int, max_groups: int = 32) -> int:
    """Largest divisor of ``num_channels`` that is at most ``max_groups``."""
    return next(g for g in range(min(max_groups, num_channels), 0, -1) if num_channels % g == 0)


def get_norm(norm: NormSpec, num_channels: int, spatial_dims: int = 2) -> nn.Module:
    """Builds a normalisation layer for features of shape (B, C, *spatial).

    Args:
        norm: ``"batch" | "layer" | "instance" | "group" | "none"`` or ``None``; an ``nn.Module``
            subclass (called as ``cls(num_channels, **kwargs)``); a callable
            ``f(num_channels) -> nn.Module``; or a tuple ``(name_or_class, kwargs)`` such as
            ``("group", {"num_groups": 8})``. See the module docstring for the definitions.
        num_channels: C.
        spatial_dims: number of spatial axes (1, 2 or 3); picks the Nd variant of batch and
            instance norm. Use 1 for (B, C) features.

    Raises:
        ValueError: unknown name (the message lists the allowed ones), bad ``num_groups``, bad
            ``spatial_dims`` or a module instance instead of a class/factory.
    """
    _check_spatial_dims(spatial_dims)
    if num_channels < 1:
        raise ValueError(f"num_channels must be positive, got {num_channels}.")
    norm, kwargs = _split_spec(norm)
    if norm is None:
        norm = "none"
    if isinstance(norm, nn.Module):
        raise ValueError(
            "norm must be a name, an nn.Module subclass or a factory, not a module instance "
            "(each block needs its own parameters)."
        )
    if callable(norm) and not isinstance(norm, str):  # a class or a factory
        return norm(num_channels, **kwargs)
    if not isinstance(norm, str) or norm.lower() not in NORMS:
        raise ValueError(
            f"Unknown norm {norm!r}; allowed: {', '.join(NORMS)}, a class or a callable."
        )
    name = norm.lower()
    if name == "none":
        return nn.Identity()
    if name == "batch":
        cls = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[spatial_dims - 1]
        return cls(num_channels, **kwargs)
    if name == "instance":
        kwargs.setdefault("affine", True)
        cls = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[spatial_dims - 1]
        return cls(num_channels, **kwargs)
    if name == "layer":
        return nn.GroupNorm(1, num_channels, **kwargs)
    num_groups = kwargs.pop("num_groups", None) or default_num_groups(num_channels)
    if num_channels % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide num_channels={num_channels}.")
    return nn.GroupNorm(num_groups, num_channels, **kwargs)


def get_act(act: ActSpec) -> nn.Module:
    """Builds an activation module.

    Args:
        act: a name (``"relu" | "leaky_relu" | "gelu" | "silu" | "tanh" | "sigmoid" | "elu" |
            "identity" | "none"`` and the others in ``ACTS``), ``None`` (identity), an
            ``nn.Module`` subclass or zero-argument factory, or ``(name_or_class, kwargs)`` such as
            ``("leaky_relu", {"negative_slope": 0.2})``.

    Raises:
        ValueError: unknown name (the message lists the allowed ones) or a module instance.
    """
    act, kwargs = _split_spec(act)
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        raise ValueError(
            "act must be a name, an nn.Module subclass or a factory, not a module instance."
        )
    if callable(act) and not isinstance(act, str):
        return act(**kwargs)
    if not isinstance(act, str) or act.lower() not in ACTS:
        raise ValueError(f"Unknown act {act!r}; allowed: {', '.join(ACTS)}, a class or a callable.")
    return ACTS[act.lower()](**kwargs)


def get_conv(spatial_dims: int, transpose: bool = False) -> type[nn.Module]:
    """``nn.Conv{1,2,3}d`` (or ``nn.ConvTranspose{1,2,3}d``) for ``spatial_dims``."""
    _check_spatial_dims(spatial_dims)
    if transpose:
        return (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[spatial_dims - 1]
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial_dims - 1]


def get_dropout(spatial_dims: int) -> type[nn.Module]:
    """Channel-wise dropout ``nn.Dropout{1,2,3}d`` (whole feature maps are zeroed)."""
    _check_spatial_dims(spatial_dims)
    return (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)[spatial_dims - 1]


def get_pool(kind: str, spatial_dims: int) -> type[nn.Module]:
    """Pooling class: ``kind`` in ``"max" | "avg" | "adaptive_max" | "adaptive_avg"``."""
    _check_spatial_dims(spatial_dims)
    table = {
        "max": (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d),
        "avg": (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d),
        "adaptive_max": (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d),
        "adaptive_avg": (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
    }
    if kind not in table:
        raise ValueError(f"Unknown pool {kind!r}; allowed: {', '.join(POOLS)}.")
    return table[kind][spatial_dims - 1]


def _tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    out = (value,) * n if isinstance(value, int) else tuple(value)
    if len(out) != n:
        raise ValueError(f"{name} needs {n} values for spatial_dims={n}, got {value!r}.")
    return out


def same_padding(
    kernel_size: int | Sequence[int], dilation: int | Sequence[int] = 1, spatial_dims: int = 2
) -> tuple[int, ...]:
    """Symmetric padding keeping the size (stride 1) for odd effective kernels.

    With stride s the output size is ceil(n / s). Raises ``ValueError`` for an even effective
    kernel ``dilation * (kernel_size - 1) + 1``, which would need asymmetric padding.
    """
    ks = _tuple(kernel_size, spatial_dims, "kernel_size")
    ds = _tuple(dilation, spatial_dims, "dilation")
    if any(d * (k - 1) % 2 for k, d in zip(ks, ds, strict=True)):
        raise ValueError(
            f"padding='same' with stride > 1 needs an odd effective kernel; got kernel_size="
            f"{kernel_size}, dilation={dilation}."
        )
    return tuple(d * (k - 1) // 2 for k, d in zip(ks, ds, strict=True))


class ConvNormAct(nn.Sequential):
    """Convolution followed by normalisation and activation, in a chosen order.

    Children are named ``conv``, ``norm`` and ``act`` and appear in forward order (an unused norm
    or activation is an ``nn.Identity``), so ``block.norm`` works for every configuration.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: int or one value per spatial axis.
        stride: convolution stride.
        dilation: convolution dilation.
        groups: convolution groups (``groups=in_channels`` gives a depthwise conv).
        norm: normalisation spec for ``get_norm``.
        act: activation spec for ``get_act``.
        order: ``"norm_act"`` (conv → norm → act, Ioffe & Szegedy 2015) or ``"act_norm"``
            (conv → act → norm).
        padding: ``"same"`` (size kept at stride 1, ceil(n / stride) otherwise), ``"valid"`` (no
            padding) or an int.
        bias: conv bias; ``None`` means a bias unless a norm directly follows the conv (the norm's
            shift makes it redundant).

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial')
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        order: Literal["norm_act", "act_norm"] = "norm_act",
        padding: Literal["same", "valid"] | int = "same",
        bias: bool | None = None,
    ) -> None:
        if order not in ("norm_act", "act_norm"):
            raise ValueError(f"order must be 'norm_act' or 'act_norm', got {order!r}.")
        if padding == "same":
            strides = _tuple(stride, spatial_dims, "stride")
            if all(s == 1 for s in strides):
                pad: Any = "same"  # torch pads asymmetrically for even kernels
            else:
                pad = same_padding(kernel_size, dilation, spatial_dims)
        elif padding == "valid":
            pad = 0
        elif isinstance(padding, int) and padding >= 0:
            pad = padding
        else:
            raise ValueError(f"padding must be 'same', 'valid' or an int >= 0, got {padding!r}.")
        norm_layer = get_norm(norm, out_channels, spatial_dims)
        act_layer = get_act(act)
        if bias is None:
            bias = isinstance(norm_layer, nn.Identity) or order == "act_norm"
        conv = get_conv(spatial_dims)(
            in_channels, out_channels, kernel_size, stride=stride, padding=pad,
            dilation=dilation, groups=groups, bias=bias,
        )
        layers = [("conv", conv), ("norm", norm_layer), ("act", act_layer)]
        if order == "act_norm":
            layers[1], layers[2] = layers[2], layers[1]
        super().__init__(OrderedDict(layers))
        self.order = order
