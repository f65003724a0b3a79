"""A small configurable CNN classifier for 1-D, 2-D and 3-D inputs.

Stages of ``ConvNormAct`` blocks with downsampling between stages, global average pooling
(Lin et al. 2014, "Network in Network") and a linear head. Options cover the guide's CNN tips so
the lab can ablate them on one network: residual connections (He et al. 2016, "Deep Residual
Learning"), stochastic depth on the residual branches (Huang et al. 2016), norm/activation order
(Ioffe & Szegedy 2015), max-pool versus strided-conv downsampling, dropout before the head
(Srivastava et al. 2014), depthwise separable convolutions (Howard et al. 2017, "MobileNets"), an
optional stem conv, and the head's pooling: global average pooling, spatial pyramid pooling (He
et al. 2014, "Spatial Pyramid Pooling in Deep Convolutional Networks") or a flattened map of a
fixed input size (the fully connected head SPP was designed to free from that constraint).

A residual block is ``shortcut(x) + DropPath(ConvNormAct(x))``; the branch is the same
``ConvNormAct`` as a plain block, so plain-versus-residual compares networks of equal depth and
(apart from 1x1 projection shortcuts where channels change) equal parameter count.

Axis letters: B batch, C channels, *spatial the 1-3 spatial axes, K classes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.conv_blocks import DepthwiseSeparableConv
from dltricks.nn.drop import DropPath
from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, get_conv, get_norm, get_pool
from dltricks.nn.pool import SpatialPyramidPooling

Downsample = Literal["maxpool", "stride", "none"]
HeadPool = Literal["avg", "spp", "flatten"]


def _conv_block(spatial_dims: int, in_channels: int, out_channels: int, stride: int,
                separable: bool, kernel_size: int, norm: NormSpec, act: ActSpec,
                order: str) -> nn.Module:
    """A full ``ConvNormAct`` or, with ``separable``, a ``DepthwiseSeparableConv``."""
    if separable:
        return DepthwiseSeparableConv(spatial_dims, in_channels, out_channels, kernel_size,
                                      stride=stride, norm=norm, act=act)
    return ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size, stride=stride,
                       norm=norm, act=act, order=order)


@torch.fx.wrap
def _check_input_size(x: Tensor, size: int) -> None:
    if any(s != size for s in x.shape[2:]):
        raise ValueError(
            f"This SmallCNN has pool='flatten' and takes inputs of size {size} on every axis "
            f"only, got {tuple(x.shape[2:])}; resize the input or use pool='spp' or 'avg'."
        )


class ResidualConvBlock(nn.Module):
    """``shortcut(x) + DropPath(p)(ConvNormAct(x))``; the shortcut is a 1x1 conv + norm when the
    channels or the stride change, the identity otherwise."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int,
                 drop_path: float, separable: bool = False, **conv_kwargs) -> None:
        super().__init__()
        self.branch = _conv_block(spatial_dims, in_channels, out_channels, stride, separable,
                                  **conv_kwargs)
        self.drop_path = DropPath(drop_path)
        if in_channels != out_channels or stride != 1:
            norm = conv_kwargs.get("norm", "batch")
            self.shortcut: nn.Module = nn.Sequential(
                get_conv(spatial_dims)(in_channels, out_channels, 1, stride=stride, bias=False),
                get_norm(norm, out_channels, spatial_dims),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.drop_path(self.branch(x))


class SmallCNN(nn.Module):
    """Stages of conv blocks → global average pool → dropout → linear head.

    Args:
        in_channels: C of the input.
        num_classes: K.
        spatial_dims: 1, 2 or 3.
        channels: output channels of each stage.
        blocks_per_stage: conv blocks in each stage.
        kernel_size: conv kernel size (odd, "same" padding).
        norm: normalisation spec (see ``dltricks.nn.get_norm``).
        act: activation spec (see ``dltricks.nn.get_act``).
        norm_order: ``"norm_act"`` or ``"act_norm"``.
        residual: wrap each block in a residual connection.
        drop_path: stochastic-depth rate of the last block; rates rise linearly from 0 over the
            blocks. Needs ``residual=True``.
        downsample: between stages, ``"maxpool"`` (2x max pool), ``"stride"`` (first conv of the
            stage has stride 2) or ``"none"``.
        dropout: dropout probability before the head.
        stem: kernel size of a stem ``ConvNormAct`` from ``in_channels`` to ``channels[0]``
            before the first stage (0: no stem). ``stem=1`` lifts the input channels without
            widening the receptive field, so that a first stage of C → C convs can be compared
            with another (3x3 stacks against one large kernel).
        separable: make the blocks' convs depthwise separable (depthwise k x k + pointwise
            1x1, each followed by norm and activation; MobileNet v1). The first conv of the
            network (the stem, or else the first block) stays a full convolution, as in
            MobileNet: a depthwise conv of a one-channel input would be a single filter.
            Needs ``norm_order="norm_act"``.
        pool: how the last feature map becomes a vector: ``"avg"`` (global average pooling),
            ``"spp"`` (spatial pyramid max pooling into ``spp_levels`` bins per axis; any
            input size gives the same length) or ``"flatten"`` (the map flattened: a network
            for one input size, ``input_size``).
        spp_levels: bins per axis of each pyramid level for ``pool="spp"``.
        input_size: the one spatial size (every axis) a ``pool="flatten"`` network takes.

    Shapes:
        (B, in_channels, *spatial) → (B, K); with ``pool="flatten"`` spatial is
        ``(input_size,) * spatial_dims``.

    Attributes:
        fixed_input_size: ``input_size`` for ``pool="flatten"``, None when any size works.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        channels: Sequence[int] = (32, 64),
        blocks_per_stage: int = 1,
        kernel_size: int = 3,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        norm_order: Literal["norm_act", "act_norm"] = "norm_act",
        residual: bool = False,
        drop_path: float = 0.0,
        downsample: Downsample = "maxpool",
        dropout: float = 0.0,
        stem: int = 0,
        separable: bool = False,
        pool: HeadPool = "avg",
        spp_levels: Sequence[int] = (1, 2, 4),
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}.")
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}.")
        if downsample not in ("maxpool", "stride", "none"):
            raise ValueError(
                f"downsample must be 'maxpool', 'stride' or 'none', got {downsample!r}."
            )
        if drop_path and not residual:
            raise ValueError("drop_path > 0 needs residual=True (it drops residual branches).")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if not isinstance(stem, int) or stem < 0 or (stem and stem % 2 == 0):
            raise ValueError(f"stem must be 0 (none) or an odd kernel size, got {stem!r}.")
        if separable and norm_order != "norm_act":
            raise ValueError("separable=True needs norm_order='norm_act' (the depthwise "
                             "separable block puts the norm before each activation).")
        if pool not in ("avg", "spp", "flatten"):
            raise ValueError(f"pool must be 'avg', 'spp' or 'flatten', got {pool!r}.")
        if pool == "flatten" and (not isinstance(input_size, int) or input_size < 1):
            raise ValueError(f"pool='flatten' needs the network's input_size (a positive int), "
                             f"got {input_size!r}.")
        conv_kwargs = dict(kernel_size=kernel_size, norm=norm, act=act, order=norm_order)
        n_blocks = len(channels) * blocks_per_stage
        # plain floats, not torch.linspace(...).tolist(): that fails on the meta device
        rates = ([drop_path * i / (n_blocks - 1) for i in range(n_blocks)] if n_blocks > 1
                 else [drop_path])
        self.stem: nn.Module = nn.Identity()
        width = in_channels
        if stem:
            self.stem = ConvNormAct(spatial_dims, in_channels, channels[0], stem, norm=norm,
                                    act=act, order=norm_order)
            width = channels[0]
        stages: list[nn.Module] = []
        k = 0
        for i, out in enumerate(channels):
            blocks: list[nn.Module] = []
            if i > 0 and downsample == "maxpool":
                blocks.append(get_pool("max", spatial_dims)(2, ceil_mode=True))
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0 and downsample == "stride") else 1
                sep = separable and not (k == 0 and not stem)  # the first conv stays full
                if residual:
                    blocks.append(ResidualConvBlock(spatial_dims, width, out, stride, rates[k],
                                                    separable=sep, **conv_kwargs))
                else:
                    blocks.append(_conv_block(spatial_dims, width, out, stride, sep,
                                              **conv_kwargs))
                width, k = out, k + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fixed_input_size = input_size if pool == "flatten" else None
        if pool == "avg":
            self.pool: nn.Module = nn.Sequential(get_pool("adaptive_avg", spatial_dims)(1),
                                                 nn.Flatten(1))
            features = width
        elif pool == "spp":
            spp = SpatialPyramidPooling(spatial_dims, spp_levels, pool="max")
            self.pool, features = spp, spp.output_features(width)
        else:
            side = input_size
            for _ in range(len(channels) - 1 if downsample != "none" else 0):
                side = -(-side // 2)  # max pool (ceil mode) and "same" stride-2 convs round up
            self.pool, features = nn.Flatten(1), width * side**spatial_dims
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(features, num_classes)
        self.num_features = features

    def forward_features(self, x: Tensor) -> Tensor:
        if self.fixed_input_size is not None:
            _check_input_size(x, self.fixed_input_size)
        return self.pool(self.stages(self.stem(x)))  # (B, num_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.forward_features(x)))  # (B, K)


def _cnn_example(spatial_dims: int, size: int) -> dict:
    return dict(kwargs=dict(in_channels=1, num_classes=10), input=(2, 1) + (size,) * spatial_dims,
                dtype="float", output=(2, 10))


def _fixed_dims(spatial_dims: int, doc: str):
    """A ``SmallCNN`` factory with ``spatial_dims`` fixed; its signature (which the registry
    checks recipe kwargs against) is SmallCNN's without ``spatial_dims``."""

    def factory(**kwargs) -> SmallCNN:
        return SmallCNN(spatial_dims=spatial_dims, **kwargs)

    sig = inspect.signature(SmallCNN)
    factory.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name != "spatial_dims"],
        return_annotation=SmallCNN,
    )
    factory.__doc__ = doc
    return factory


register_model("small_cnn", task="classification",
               description="Small CNN classifier (2-D by default).",
               example=_cnn_example(2, 8))(SmallCNN)
cnn1d = register_model("cnn1d", task="classification",
                       description="Small 1-D CNN (e.g. 40-step MNIST-1D).",
                       example=_cnn_example(1, 40))(
    _fixed_dims(1, "``SmallCNN`` with ``spatial_dims=1``."))
cnn3d = register_model("cnn3d", task="classification", description="Small 3-D CNN for volumes.",
                       example=_cnn_example(3, 8))(
    _fixed_dims(3, "``SmallCNN`` with ``spatial_dims=3``."))
