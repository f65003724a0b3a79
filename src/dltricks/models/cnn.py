"""A small configurable CNN classifier for 1-D, 2-D and 3-D inputs.

Stages of ``ConvNormAct`` blocks with downsampling between stages, global average pooling
(Lin et al. 2014, "Network in Network") and a linear head. Options cover the guide's CNN tips so
the lab can ablate them on one network: residual connections (He et al. 2016, "Deep Residual
Learning"), stochastic depth on the residual branches (Huang et al. 2016), norm/activation order
(Ioffe & Szegedy 2015), max-pool versus strided-conv downsampling and dropout before the head
(Srivastava et al. 2014).

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
from dltricks.nn.drop import DropPath
from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, get_conv, get_norm, get_pool

Downsample = Literal["maxpool", "stride", "none"]


class ResidualConvBlock(nn.Module):
    """``shortcut(x) + DropPath(p)(ConvNormAct(x))``; the shortcut is a 1x1 conv + norm when the
    channels or the stride change, the identity otherwise."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int,
                 drop_path: float, **conv_kwargs) -> None:
        super().__init__()
        self.branch = ConvNormAct(spatial_dims, in_channels, out_channels, stride=stride,
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

    Shapes:
        (B, in_channels, *spatial) → (B, K)
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
        conv_kwargs = dict(kernel_size=kernel_size, norm=norm, act=act, order=norm_order)
        n_blocks = len(channels) * blocks_per_stage
        rates = torch.linspace(0.0, drop_path, n_blocks).tolist() if n_blocks > 1 else [drop_path]
        stages: list[nn.Module] = []
        width, k = in_channels, 0
        for i, out in enumerate(channels):
            blocks: list[nn.Module] = []
            if i > 0 and downsample == "maxpool":
                blocks.append(get_pool("max", spatial_dims)(2, ceil_mode=True))
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0 and downsample == "stride") else 1
                if residual:
                    blocks.append(ResidualConvBlock(spatial_dims, width, out, stride, rates[k],
                                                    **conv_kwargs))
                else:
                    blocks.append(ConvNormAct(spatial_dims, width, out, stride=stride,
                                              **conv_kwargs))
                width, k = out, k + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = get_pool("adaptive_avg", spatial_dims)(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(width, num_classes)
        self.num_features = width

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool(self.stages(x)).flatten(1)  # (B, C_last)

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
