"""Convolution blocks: small-kernel stacks, depthwise separable and dilated convolutions,
and a downsampling option.

* ``ConvStack``: ``n`` stacked k x k convolutions as a drop-in for one large kernel. Simonyan &
  Zisserman 2015 ("Very Deep Convolutional Networks for Large-Scale Image Recognition"): three
  3x3 layers see a 7x7 field with 27 C² weights instead of 49 C², and add two non-linearities.
  ``n`` layers of size k cover ``n * (k - 1) + 1`` positions per axis.
* ``DepthwiseSeparableConv``: a per-channel (depthwise) k x k convolution followed by a 1x1
  (pointwise) one, Howard et al. 2017 ("MobileNets"); about ``1 / out + 1 / k²`` of the cost of a
  full convolution.
* ``DilatedConv``: an atrous convolution (Yu & Koltun 2016; Chen et al. 2017, "DeepLab") whose
  kernel taps are ``dilation`` apart: field ``dilation * (k - 1) + 1`` at the weights of k.
* ``Downsample``: halve the resolution by max pooling or a strided convolution, or keep it
  ("dilation") and let later layers dilate instead, as DeepLab does to keep dense features.

Axis letters: B batch, C channels, *spatial the 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, _check_spatial_dims, get_pool

DownsampleMode = Literal["maxpool", "stride", "dilation"]
DOWNSAMPLE_MODES = ("maxpool", "stride", "dilation")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def stack_depth_for_kernel(kernel_size: int, small_kernel: int = 3) -> int:
    """Number of stride-1 ``small_kernel`` layers whose receptive field equals one
    ``kernel_size`` layer: ``(kernel_size - 1) / (small_kernel - 1)``.

    Raises:
        ValueError: when no whole number of small kernels matches the large one.
    """
    if small_kernel < 2 or kernel_size < small_kernel or (kernel_size - 1) % (small_kernel - 1):
        raise ValueError(
            f"A {kernel_size}-kernel cannot be replaced by a whole number of "
            f"{small_kernel}-kernels; need (kernel_size - 1) divisible by (small_kernel - 1)."
        )
    return (kernel_size - 1) // (small_kernel - 1)


class ConvStack(nn.Sequential):
    """``num_layers`` ``ConvNormAct`` layers of size ``kernel_size`` (children ``0..n-1``).

    The first layer maps ``in_channels`` to ``out_channels`` and carries the stride; the others
    keep ``out_channels``. With ``num_layers=1, kernel_size=2n+1`` it is the single large conv
    the stack replaces.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels of every layer.
        kernel_size: kernel size of every layer (odd for "same" padding).
        num_layers: how many layers.
        stride: stride of the first layer.
        dilation: dilation of every layer, or one value per layer.
        norm: normalisation spec.
        act: activation spec (after every layer).
        padding: ``"same"`` or ``"valid"``.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial')
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        num_layers: int = 2,
        stride: int = 1,
        dilation: int | Sequence[int] = 1,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        padding: Literal["same", "valid"] = "same",
    ) -> None:
        _check_spatial_dims(spatial_dims)
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("num_layers", num_layers),
                        ("stride", stride)):
            _positive(name, v)
        dilations = [dilation] * num_layers if isinstance(dilation, int) else list(dilation)
        if len(dilations) != num_layers:
            raise ValueError(
                f"dilation needs one value per layer ({num_layers}), got {dilation!r}."
            )
        layers = [
            ConvNormAct(spatial_dims, in_channels if i == 0 else out_channels, out_channels,
                        kernel_size, stride=stride if i == 0 else 1, dilation=d, norm=norm,
                        act=act, padding=padding)
            for i, d in enumerate(dilations)
        ]
        super().__init__(*layers)


class DilatedConv(ConvNormAct):
    """An atrous ``ConvNormAct``: kernel taps ``dilation`` apart, "same" padding.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        dilation: spacing of the kernel taps (1 is an ordinary convolution).
        norm: normalisation spec.
        act: activation spec.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial)
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: int = 3, dilation: int = 2, norm: NormSpec = "batch",
                 act: ActSpec = "relu") -> None:
        _positive("dilation", dilation)
        _positive("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for a centred dilated conv, got "
                             f"{kernel_size}.")
        super().__init__(spatial_dims, in_channels, out_channels, kernel_size,
                         dilation=dilation, norm=norm, act=act)


class DepthwiseSeparableConv(nn.Module):
    """Depthwise k x k conv → norm → act → pointwise 1x1 conv → norm → act (MobileNet v1).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: depthwise kernel size.
        stride: stride of the depthwise conv.
        dilation: dilation of the depthwise conv.
        norm: normalisation spec.
        act: activation spec after both convs (``pointwise_act`` overrides the second).
        pointwise_act: activation after the pointwise conv; ``"same"`` reuses ``act``.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial')
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        pointwise_act: ActSpec = "same",
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("stride", stride)):
            _positive(name, v)
        self.depthwise = ConvNormAct(spatial_dims, in_channels, in_channels, kernel_size,
                                     stride=stride, dilation=dilation, groups=in_channels,
                                     norm=norm, act=act)
        self.pointwise = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=norm,
                                     act=act if pointwise_act == "same" else pointwise_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class Downsample(nn.Module):
    """Resolution reduction by ``factor`` as an option.

    * ``"maxpool"``: ``factor`` x ``factor`` max pooling (channels must not change).
    * ``"stride"``: a ``ConvNormAct`` with stride ``factor`` and the smallest odd kernel >= factor.
    * ``"dilation"``: no downsampling; the module is a 1x1 ``ConvNormAct`` when the channels
      change, the identity otherwise, and ``next_dilation`` tells later layers to multiply their
      dilation by ``factor`` so the receptive field grows as if the map had been downsampled.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels (``"maxpool"`` needs them equal to ``in_channels``).
        mode: ``"maxpool" | "stride" | "dilation"``.
        factor: downsampling factor.
        norm: normalisation spec of the conv.
        act: activation spec of the conv.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial / factor) (not divided for
        ``"dilation"``)
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 mode: DownsampleMode = "maxpool", factor: int = 2, norm: NormSpec = "batch",
                 act: ActSpec = "relu") -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _positive("factor", factor)
        if mode not in DOWNSAMPLE_MODES:
            raise ValueError(f"mode must be one of {', '.join(DOWNSAMPLE_MODES)}, got {mode!r}.")
        if mode == "maxpool" and in_channels != out_channels:
            raise ValueError("mode='maxpool' keeps the channels; in_channels must equal "
                             f"out_channels, got {in_channels} and {out_channels}.")
        self.mode = mode
        self.factor = factor
        self.dilation_multiplier = factor if mode == "dilation" else 1
        if mode == "maxpool":
            self.op: nn.Module = get_pool("max", spatial_dims)(factor, ceil_mode=True)
        elif mode == "stride":
            self.op = ConvNormAct(spatial_dims, in_channels, out_channels, factor + 1 - factor % 2,
                                  stride=factor, norm=norm, act=act)
        elif in_channels != out_channels:
            self.op = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=norm, act=act)
        else:
            self.op = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)
