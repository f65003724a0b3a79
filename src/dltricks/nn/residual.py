"""Residual blocks: basic, bottleneck, pre-activation and inverted residual.

* ``BasicBlock`` and ``Bottleneck``: He et al. 2016a, "Deep Residual Learning for Image
  Recognition". The bottleneck is 1x1 (reduce) → 3x3 → 1x1 (expand by 4). In the paper (v1) a
  downsampling bottleneck has its stride in the first 1x1; the widely used "v1.5" (Caffe2 /
  torchvision) moves it to the 3x3 (``stride_in_1x1=False``), which changes the receptive
  field (ResNet-50: 483 versus 427) and the MACs but not the parameter count.
* ``PreActBlock`` and ``PreActBottleneck``: He et al. 2016b, "Identity Mappings in Deep Residual
  Networks": norm → act → conv ordering, so the shortcut path is a clean identity.
* ``InvertedResidual``: Sandler et al. 2018, "MobileNetV2": 1x1 expand → depthwise 3x3 → linear
  1x1 project, with a shortcut when shapes allow.

Every block takes ``attention`` (``"se"`` or ``"cbam"``, applied to the residual branch before
the addition as in SE-ResNet and CBAM) and ``drop_path`` (stochastic depth on the branch).
A projection shortcut (1x1 conv + norm, strided) is used where the channels or the stride change.

Axis letters: B batch, C channels, *spatial the 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

from torch import Tensor, nn

from dltricks.nn.cnn_attention import get_cnn_attention
from dltricks.nn.drop import DropPath
from dltricks.nn.factory import (
    ActSpec,
    ConvNormAct,
    NormSpec,
    _check_spatial_dims,
    get_act,
    get_conv,
    get_norm,
)


def _check(in_channels: int, out_channels: int, stride: int, dilation: int) -> None:
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                    ("stride", stride), ("dilation", dilation)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}.")


def projection_shortcut(spatial_dims: int, in_channels: int, out_channels: int, stride: int,
                        norm: NormSpec, preact: bool = False) -> nn.Module:
    """Identity, or a strided 1x1 conv (+ norm unless ``preact``) when shapes change."""
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    conv = get_conv(spatial_dims)(in_channels, out_channels, 1, stride=stride, bias=False)
    if preact:
        return conv
    return nn.Sequential(conv, get_norm(norm, out_channels, spatial_dims))


class _Residual(nn.Module):
    """``act(shortcut(x) + drop_path(attention(branch(x))))``; ``act`` is the identity for
    pre-activation blocks."""

    branch: nn.Module
    shortcut: nn.Module
    attention: nn.Module
    drop_path: nn.Module
    out_act: nn.Module

    def _add_paths(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int,
                   norm: NormSpec, act: ActSpec, attention: str | None, drop_path: float,
                   preact: bool = False) -> None:
        """Adds what every block has around its branch: the shortcut, the branch attention, the
        drop path and the output activation (the identity for pre-activation blocks)."""
        self.shortcut = projection_shortcut(spatial_dims, in_channels, out_channels, stride, norm,
                                            preact=preact)
        self.attention = get_cnn_attention(attention, spatial_dims, out_channels)
        self.drop_path = DropPath(drop_path)
        self.out_act = nn.Identity() if preact else get_act(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_act(self.shortcut(x) + self.drop_path(self.attention(self.branch(x))))


class BasicBlock(_Residual):
    """Two 3x3 ``ConvNormAct`` (the second without activation) plus a shortcut, then act.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first conv and of the projection shortcut.
        dilation: dilation of both convs.
        norm: normalisation spec.
        act: activation spec.
        attention: ``None``, ``"se"`` or ``"cbam"`` on the branch.
        drop_path: stochastic-depth probability of the branch.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial / stride)
    """

    expansion = 1

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1,
                 dilation: int = 1, norm: NormSpec = "batch", act: ActSpec = "relu",
                 attention: str | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check(in_channels, out_channels, stride, dilation)
        self.branch = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, out_channels, 3, stride=stride,
                        dilation=dilation, norm=norm, act=act),
            ConvNormAct(spatial_dims, out_channels, out_channels, 3, dilation=dilation,
                        norm=norm, act=None),
        )
        self._add_paths(spatial_dims, in_channels, out_channels, stride, norm, act, attention,
                        drop_path)


class Bottleneck(_Residual):
    """1x1 reduce → 3x3 → 1x1 expand (no activation) plus a shortcut, then act.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels (``4 * width`` in ResNet-50).
        width: channels of the 1x1 reduction and the 3x3 conv; ``out_channels // 4`` if None.
        stride: downsampling stride.
        stride_in_1x1: put the stride in the first 1x1 (the paper's v1) instead of the 3x3 (v1.5).
        groups: groups of the 3x3 conv (ResNeXt).
        dilation: dilation of the 3x3 conv.
        norm: normalisation spec.
        act: activation spec.
        attention: ``None``, ``"se"`` or ``"cbam"`` on the branch.
        drop_path: stochastic-depth probability of the branch.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial / stride)
    """

    expansion = 4

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 width: int | None = None, stride: int = 1, stride_in_1x1: bool = False,
                 groups: int = 1, dilation: int = 1, norm: NormSpec = "batch",
                 act: ActSpec = "relu", attention: str | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check(in_channels, out_channels, stride, dilation)
        width = width or out_channels // self.expansion
        if width < 1 or width % groups:
            raise ValueError(f"width ({width}) must be a positive multiple of groups ({groups}).")
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.branch = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, width, 1, stride=s1, norm=norm, act=act),
            ConvNormAct(spatial_dims, width, width, 3, stride=s3, dilation=dilation,
                        groups=groups, norm=norm, act=act),
            ConvNormAct(spatial_dims, width, out_channels, 1, norm=norm, act=None),
        )
        self._add_paths(spatial_dims, in_channels, out_channels, stride, norm, act, attention,
                        drop_path)


def _preact_conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int, dilation: int, norm: NormSpec, act: ActSpec) -> nn.Sequential:
    """norm → act → conv (no bias), the pre-activation unit."""
    pad = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        get_norm(norm, in_channels, spatial_dims), get_act(act),
        get_conv(spatial_dims)(in_channels, out_channels, kernel_size, stride=stride,
                               padding=pad, dilation=dilation, bias=False),
    )


class PreActBlock(_Residual):
    """Pre-activation basic block: (norm → act → 3x3 conv) x 2 plus a shortcut, no final act.

    The projection shortcut (when shapes change) is a bare 1x1 conv on the input, as in He et
    al. 2016b's code it sees the *pre-activated* input; here it sees the raw input, which keeps
    the block self-contained (the identity path, the paper's point, is unchanged).

    Args: as ``BasicBlock``.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial / stride)
    """

    expansion = 1

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1,
                 dilation: int = 1, norm: NormSpec = "batch", act: ActSpec = "relu",
                 attention: str | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check(in_channels, out_channels, stride, dilation)
        self.branch = nn.Sequential(
            _preact_conv(spatial_dims, in_channels, out_channels, 3, stride, dilation, norm, act),
            _preact_conv(spatial_dims, out_channels, out_channels, 3, 1, dilation, norm, act),
        )
        self._add_paths(spatial_dims, in_channels, out_channels, stride, norm, act, attention,
                        drop_path, preact=True)


class PreActBottleneck(_Residual):
    """Pre-activation bottleneck: norm → act → 1x1, norm → act → 3x3, norm → act → 1x1.

    Args: as ``Bottleneck`` (the stride is in the 3x3).

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial / stride)
    """

    expansion = 4

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 width: int | None = None, stride: int = 1, dilation: int = 1,
                 norm: NormSpec = "batch", act: ActSpec = "relu", attention: str | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check(in_channels, out_channels, stride, dilation)
        width = width or out_channels // self.expansion
        if width < 1:
            raise ValueError(f"width must be positive, got {width}.")
        self.branch = nn.Sequential(
            _preact_conv(spatial_dims, in_channels, width, 1, 1, 1, norm, act),
            _preact_conv(spatial_dims, width, width, 3, stride, dilation, norm, act),
            _preact_conv(spatial_dims, width, out_channels, 1, 1, 1, norm, act),
        )
        self._add_paths(spatial_dims, in_channels, out_channels, stride, norm, act, attention,
                        drop_path, preact=True)


class InvertedResidual(nn.Module):
    """MobileNet v2 block: 1x1 expand (skipped when ``expand_ratio == 1``) → depthwise 3x3 →
    linear 1x1 project; ``x +`` that when stride is 1 and the channels match.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise conv.
        expand_ratio: hidden width ``in_channels * expand_ratio`` (t in the paper).
        dilation: dilation of the depthwise conv.
        norm: normalisation spec.
        act: activation spec (ReLU6 in the paper).
        drop_path: stochastic-depth probability when there is a shortcut.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial / stride)
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1,
                 expand_ratio: int = 6, dilation: int = 1, norm: NormSpec = "batch",
                 act: ActSpec = "relu6", drop_path: float = 0.0) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check(in_channels, out_channels, stride, dilation)
        if expand_ratio < 1:
            raise ValueError(f"expand_ratio must be >= 1, got {expand_ratio}.")
        hidden = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(spatial_dims, in_channels, hidden, 1, norm=norm, act=act))
        layers += [
            ConvNormAct(spatial_dims, hidden, hidden, 3, stride=stride, dilation=dilation,
                        groups=hidden, norm=norm, act=act),
            ConvNormAct(spatial_dims, hidden, out_channels, 1, norm=norm, act=None),
        ]
        self.branch = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path if self.use_shortcut else 0.0)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_shortcut:
            return x + self.drop_path(self.branch(x))
        return self.branch(x)
