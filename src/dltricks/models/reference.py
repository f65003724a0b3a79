"""Reference CNNs for analysis, built from ``dltricks.nn`` blocks and faithful to the papers.

Parameter counts at 1000 classes (checked by tests; equal to torchvision's models):

=====================  ===========  ================================================================
model                  parameters   source
=====================  ===========  ================================================================
``alexnet``            61,100,840   Krizhevsky et al. 2012 as in torchvision (the one-GPU "One weird
                                    trick" variant, Krizhevsky 2014: 64-192-384-256-256 channels,
                                    6x6 adaptive average pool before the classifier)
``vgg16``              138,357,544  Simonyan & Zisserman 2015, configuration D
``resnet18``           11,689,512   He et al. 2016a
``resnet50_v1``        25,557,032   He et al. 2016a, stride in the first 1x1 of a bottleneck
``resnet50``           25,557,032   "v1.5" (torchvision): stride in the 3x3
``mobilenet_v1``       4,231,976    Howard et al. 2017 (width 1.0; classifier as in Keras)
``mobilenet_v2``       3,504,872    Sandler et al. 2018 (width 1.0)
=====================  ===========  ================================================================

Also registered: ``conv_stack`` and its two named cases ``stack3x3_n3`` (three 3x3 convs) and
``conv7x7`` (one 7x7 conv), tiny classifiers for the "small kernels instead of a large one"
comparison (Simonyan & Zisserman 2015, section 2.3).

``width_mult`` scales every channel count (MobileNet's width multiplier, applied to the other
networks too) and ``hidden`` sets the width of AlexNet's and VGG's fully connected layers, so
registry tests can build small copies. All networks take 1, 2 or 3 ``spatial_dims``.

Axis letters: B batch, C channels, K classes, *spatial the spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.conv_blocks import ConvStack, DepthwiseSeparableConv
from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, _check_spatial_dims, get_pool
from dltricks.nn.residual import BasicBlock, Bottleneck, InvertedResidual


def _scaled(channels: int, width_mult: float, divisor: int = 1) -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor`` (at least ``divisor``),
    never more than 10% below the unrounded value (MobileNet v2's rule)."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}.")
    v = channels * width_mult
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if out < 0.9 * v:
        out += divisor
    return out


def _example(input_size: int = 32, **kwargs) -> dict:
    kw = dict(num_classes=10, **kwargs)
    return dict(kwargs=kw, input=(2, 3, input_size, input_size), dtype="float", output=(2, 10))


class Classifier(nn.Module):
    """``features`` → ``pool`` → flatten → ``head``: the shape shared by the reference nets.

    Shapes:
        (B, C, *spatial) → (B, K)
    """

    def __init__(self, features: nn.Module, pool: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.pool = pool
        self.head = head

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # (B, C, *spatial')

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))  # (B, K)


def _fc_head(in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


@register_model("alexnet", task="classification",
                description="AlexNet, torchvision's one-GPU variant (61.1M parameters).",
                example=_example(64, width_mult=0.25, hidden=64))
def alexnet(num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
            width_mult: float = 1.0, hidden: int = 4096, dropout: float = 0.5) -> Classifier:
    """AlexNet as in torchvision: 5 convs (11x11/4, 5x5, 3x3 x3), 3 max pools (3/2), a 6x6
    adaptive average pool and three fully connected layers.

    Shapes:
        (B, in_channels, *spatial) → (B, num_classes); the convs need a spatial size >= 63.
    """
    _check_spatial_dims(spatial_dims)
    c = [_scaled(v, width_mult) for v in (64, 192, 384, 256, 256)]
    pool = get_pool("max", spatial_dims)

    def conv(i: int, o: int, k: int, s: int, p: int) -> ConvNormAct:
        return ConvNormAct(spatial_dims, i, o, k, stride=s, padding=p, norm=None, act="relu")

    features = nn.Sequential(
        conv(in_channels, c[0], 11, 4, 2), pool(3, 2),
        conv(c[0], c[1], 5, 1, 2), pool(3, 2),
        conv(c[1], c[2], 3, 1, 1), conv(c[2], c[3], 3, 1, 1), conv(c[3], c[4], 3, 1, 1),
        pool(3, 2),
    )
    head = _fc_head(c[4] * 6**spatial_dims, hidden, num_classes, dropout)
    return Classifier(features, get_pool("adaptive_avg", spatial_dims)(6), head)


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M")


@register_model("vgg16", task="classification",
                description="VGG-16 (configuration D, 138.4M parameters).",
                example=_example(32, width_mult=0.125, hidden=32))
def vgg16(num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
          width_mult: float = 1.0, hidden: int = 4096, dropout: float = 0.5,
          norm: NormSpec = None) -> Classifier:
    """VGG-16: 13 3x3 convs in 5 stages with 2x2 max pools, a 7x7 adaptive average pool and
    three fully connected layers (``norm="batch"`` gives VGG-16-BN).

    Shapes:
        (B, in_channels, *spatial) → (B, num_classes)
    """
    _check_spatial_dims(spatial_dims)
    layers: list[nn.Module] = []
    width = in_channels
    for v in VGG16_CFG:
        if v == "M":
            layers.append(get_pool("max", spatial_dims)(2, 2))
        else:
            out = _scaled(int(v), width_mult)
            layers.append(ConvNormAct(spatial_dims, width, out, 3, padding=1, norm=norm))
            width = out
    head = _fc_head(width * 7**spatial_dims, hidden, num_classes, dropout)
    return Classifier(nn.Sequential(*layers), get_pool("adaptive_avg", spatial_dims)(7), head)


Downsampling = Literal["stride", "maxpool", "dilation"]


class ResNet(Classifier):
    """ResNet (He et al. 2016a): 7x7/2 stem conv, 3x3/2 max pool, four stages, global average
    pool, linear head.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage.
        num_classes: K.
        in_channels: input channels.
        spatial_dims: 1, 2 or 3.
        stride_in_1x1: bottleneck stride in the first 1x1 (v1) instead of the 3x3 (v1.5).
        downsample: how stages 2-4 reduce resolution: ``"stride"`` (the paper), ``"maxpool"``
            (a 2x max pool before the stage, blocks unstrided) or ``"dilation"`` (no reduction;
            the stage's convs dilate by the accumulated factor, as in DeepLab).
        width_mult: channel multiplier.
        norm: normalisation spec.
        act: activation spec.
        attention: ``None``, ``"se"`` or ``"cbam"`` in every block.

    Shapes:
        (B, in_channels, *spatial) → (B, num_classes)
    """

    def __init__(self, block: Literal["basic", "bottleneck"], layers: Sequence[int],
                 num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
                 stride_in_1x1: bool = False, downsample: Downsampling = "stride",
                 width_mult: float = 1.0, norm: NormSpec = "batch", act: ActSpec = "relu",
                 attention: str | None = None) -> None:
        _check_spatial_dims(spatial_dims)
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}.")
        if downsample not in ("stride", "maxpool", "dilation"):
            raise ValueError(
                f"downsample must be 'stride', 'maxpool' or 'dilation', got {downsample!r}."
            )
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be four positive ints, got {layers!r}.")
        stem_c = _scaled(64, width_mult)
        stem = [ConvNormAct(spatial_dims, in_channels, stem_c, 7, stride=2, norm=norm, act=act),
                get_pool("max", spatial_dims)(3, 2, padding=1)]
        expansion = 1 if block == "basic" else 4
        width, dilation = stem_c, 1
        stages: list[nn.Module] = []
        for i, n in enumerate(layers):
            planes = _scaled(64 * 2**i, width_mult)
            out = planes * expansion
            blocks: list[nn.Module] = []
            stride = 1
            if i > 0:
                if downsample == "stride":
                    stride = 2
                elif downsample == "maxpool":
                    blocks.append(get_pool("max", spatial_dims)(2, 2))
                else:
                    dilation *= 2
            for j in range(n):
                kw = dict(stride=stride if j == 0 else 1, dilation=dilation, norm=norm, act=act,
                          attention=attention)
                if block == "basic":
                    blocks.append(BasicBlock(spatial_dims, width, out, **kw))
                else:
                    blocks.append(Bottleneck(spatial_dims, width, out, width=planes,
                                             stride_in_1x1=stride_in_1x1, **kw))
                width = out
            stages.append(nn.Sequential(*blocks))
        features = nn.Sequential(*stem, *stages)
        super().__init__(features, get_pool("adaptive_avg", spatial_dims)(1),
                         nn.Linear(width, num_classes))


_RESNET_EXAMPLE = _example(16, width_mult=0.125)


@register_model("resnet18", task="classification", description="ResNet-18 (11.7M parameters).",
                example=_RESNET_EXAMPLE)
def resnet18(num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
             downsample: Downsampling = "stride", width_mult: float = 1.0,
             norm: NormSpec = "batch", attention: str | None = None) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]. See ``ResNet`` for the arguments."""
    return ResNet("basic", (2, 2, 2, 2), num_classes, in_channels, spatial_dims,
                  downsample=downsample, width_mult=width_mult, norm=norm, attention=attention)


@register_model("resnet50_v1", task="classification",
                description="ResNet-50 as in the paper: stride in the first 1x1 (25.6M).",
                example=_RESNET_EXAMPLE)
def resnet50_v1(num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
                downsample: Downsampling = "stride", width_mult: float = 1.0,
                norm: NormSpec = "batch", attention: str | None = None) -> ResNet:
    """ResNet-50 v1: bottlenecks [3, 4, 6, 3], stride in the first 1x1."""
    return ResNet("bottleneck", (3, 4, 6, 3), num_classes, in_channels, spatial_dims,
                  stride_in_1x1=True, downsample=downsample, width_mult=width_mult, norm=norm,
                  attention=attention)


@register_model("resnet50", task="classification",
                description="ResNet-50 v1.5 (torchvision): stride in the 3x3 (25.6M).",
                example=_RESNET_EXAMPLE)
def resnet50(num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
             downsample: Downsampling = "stride", width_mult: float = 1.0,
             norm: NormSpec = "batch", attention: str | None = None) -> ResNet:
    """ResNet-50 v1.5: bottlenecks [3, 4, 6, 3], stride in the 3x3."""
    return ResNet("bottleneck", (3, 4, 6, 3), num_classes, in_channels, spatial_dims,
                  stride_in_1x1=False, downsample=downsample, width_mult=width_mult, norm=norm,
                  attention=attention)


MOBILENET_V1_CFG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                    (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


@register_model("mobilenet_v1", task="classification",
                description="MobileNet v1 (width 1.0: 4.2M parameters).",
                example=_example(32, width_mult=0.25))
def mobilenet_v1(num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
                 width_mult: float = 1.0, dropout: float = 0.001) -> Classifier:
    """MobileNet v1: 3x3/2 conv, 13 depthwise separable blocks, global average pool, linear.

    Shapes:
        (B, in_channels, *spatial) → (B, num_classes)
    """
    _check_spatial_dims(spatial_dims)
    width = _scaled(32, width_mult)
    layers: list[nn.Module] = [ConvNormAct(spatial_dims, in_channels, width, 3, stride=2)]
    for c, s in MOBILENET_V1_CFG:
        out = _scaled(c, width_mult)
        layers.append(DepthwiseSeparableConv(spatial_dims, width, out, 3, stride=s))
        width = out
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))
    return Classifier(nn.Sequential(*layers), get_pool("adaptive_avg", spatial_dims)(1), head)


# (expand ratio t, channels c, repeats n, first stride s), Sandler et al. 2018, table 2
MOBILENET_V2_CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                    (6, 160, 3, 2), (6, 320, 1, 1))


@register_model("mobilenet_v2", task="classification",
                description="MobileNet v2 (width 1.0: 3.5M parameters).",
                example=_example(32, width_mult=0.25))
def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, spatial_dims: int = 2,
                 width_mult: float = 1.0, dropout: float = 0.2) -> Classifier:
    """MobileNet v2: 3x3/2 conv, 17 inverted residual blocks, 1x1 conv to 1280, pool, linear.

    Shapes:
        (B, in_channels, *spatial) → (B, num_classes)
    """
    _check_spatial_dims(spatial_dims)
    width = _scaled(32, width_mult, 8)
    layers: list[nn.Module] = [ConvNormAct(spatial_dims, in_channels, width, 3, stride=2,
                                           act="relu6")]
    for t, c, n, s in MOBILENET_V2_CFG:
        out = _scaled(c, width_mult, 8)
        for i in range(n):
            layers.append(InvertedResidual(spatial_dims, width, out, s if i == 0 else 1, t))
            width = out
    last = _scaled(1280, max(1.0, width_mult), 8)
    layers.append(ConvNormAct(spatial_dims, width, last, 1, act="relu6"))
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
    return Classifier(nn.Sequential(*layers), get_pool("adaptive_avg", spatial_dims)(1), head)


@register_model("conv_stack", task="classification",
                description="num_layers k x k convs → global pool → linear (kernel studies).",
                example=_example(16, channels=8))
def conv_stack(num_classes: int = 10, in_channels: int = 3, spatial_dims: int = 2,
               channels: int = 64, kernel_size: int = 3, num_layers: int = 3,
               dilation: int | Sequence[int] = 1, norm: NormSpec = "batch") -> Classifier:
    """``ConvStack`` of ``num_layers`` ``kernel_size`` convs, global average pool, linear head.

    Shapes:
        (B, in_channels, *spatial) → (B, num_classes)
    """
    stack = ConvStack(spatial_dims, in_channels, channels, kernel_size, num_layers,
                      dilation=dilation, norm=norm)
    return Classifier(stack, get_pool("adaptive_avg", spatial_dims)(1),
                      nn.Linear(channels, num_classes))


@register_model("stack3x3_n3", task="classification",
                description="Three 3x3 convs (7x7 field), the VGG replacement for one 7x7.",
                example=_example(16, channels=8))
def stack3x3_n3(num_classes: int = 10, in_channels: int = 3, spatial_dims: int = 2,
                channels: int = 64, norm: NormSpec = "batch") -> Classifier:
    """``conv_stack`` with three 3x3 layers."""
    return conv_stack(num_classes, in_channels, spatial_dims, channels, 3, 3, norm=norm)


@register_model("conv7x7", task="classification",
                description="One 7x7 conv, the large kernel that stack3x3_n3 replaces.",
                example=_example(16, channels=8))
def conv7x7(num_classes: int = 10, in_channels: int = 3, spatial_dims: int = 2,
            channels: int = 64, norm: NormSpec = "batch") -> Classifier:
    """``conv_stack`` with one 7x7 layer."""
    return conv_stack(num_classes, in_channels, spatial_dims, channels, 7, 1, norm=norm)
