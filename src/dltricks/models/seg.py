"""A tiny fully-convolutional encoder-decoder segmenter for 2-D and 3-D inputs.

Fully convolutional networks (Long, Shelhamer & Darrell 2015) with an optional encoder-decoder
skip connection by concatenation as in U-Net (Ronneberger et al. 2015). With the default
``channels=[16, 32]`` there is one downsampling and one upsampling step; the output has the
input's spatial size for any size, odd ones included (pooling rounds up, the upsampled map is
cropped or padded to the skip's size). A small baseline; U-Net proper lives elsewhere.

``downsample`` chooses how the encoder gains context: 2x max pooling (default), a stride-2 first
conv per level, or no resolution loss at all with dilated convolutions (Yu & Koltun 2016,
"Multi-Scale Context Aggregation by Dilated Convolutions"; Chen et al. 2017, DeepLab), whose
dilation doubles per level so the receptive field grows about as it does with pooling.

Axis letters: B batch, C channels, K classes, *spatial the 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, get_conv, get_pool


@torch.fx.wrap
def match_size(x: Tensor, size: Sequence[int]) -> Tensor:
    """Centre-pads with zeros or centre-crops the spatial axes of ``x`` (B, C, *spatial) to
    ``size``."""
    pad: list[int] = []
    for cur, want in zip(reversed(x.shape[2:]), reversed(tuple(size)), strict=True):
        diff = want - cur
        pad += [diff // 2, diff - diff // 2]  # negative pads crop
    return F.pad(x, pad) if any(pad) else x


class SegFCN(nn.Module):
    """Encoder (two convs per level, 2x downsampling between levels) → decoder (transposed
    conv, optional skip concatenation, one conv per level) → 1x1 conv to K logits.

    Args:
        in_channels: C of the input.
        num_classes: K.
        spatial_dims: 2 or 3.
        channels: encoder widths per level; ``len(channels) - 1`` down/up-sampling steps.
        skip: concatenate encoder features into the decoder (U-Net style).
        kernel_size: conv kernel size (odd).
        norm: normalisation spec (see ``dltricks.nn.get_norm``).
        act: activation spec (see ``dltricks.nn.get_act``).
        downsample: between encoder levels, ``"maxpool"`` (2x max pool), ``"stride"`` (the
            level's first conv has stride 2) or ``"dilation"`` (no downsampling: the convs of
            level i have dilation 2**i and the decoder's up-convolutions are 1x1 convs).

    Shapes:
        (B, in_channels, *spatial) → (B, K, *spatial) logits
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        channels: Sequence[int] = (16, 32),
        skip: bool = True,
        kernel_size: int = 3,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        downsample: Literal["maxpool", "stride", "dilation"] = "maxpool",
    ) -> None:
        super().__init__()
        if downsample not in ("maxpool", "stride", "dilation"):
            raise ValueError(f"downsample must be 'maxpool', 'stride' or 'dilation', got "
                             f"{downsample!r}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        if len(channels) < 2 or any(c < 1 for c in channels):
            raise ValueError(
                f"channels needs at least two positive widths (one per level), got {channels}."
            )
        self.skip = skip

        def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> ConvNormAct:
            return ConvNormAct(spatial_dims, cin, cout, kernel_size, stride=stride,
                               dilation=dilation, norm=norm, act=act)

        self.downsample = downsample
        self.pool: nn.Module = (get_pool("max", spatial_dims)(2, ceil_mode=True)
                                if downsample == "maxpool" else nn.Identity())
        self.encoders = nn.ModuleList()
        width = in_channels
        for i, c in enumerate(channels):
            stride = 2 if downsample == "stride" and i > 0 else 1
            d = 2**i if downsample == "dilation" else 1
            self.encoders.append(nn.Sequential(conv(width, c, stride, d), conv(c, c, 1, d)))
            width = c
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c in reversed(channels[:-1]):
            if downsample == "dilation":  # nothing to upsample: a 1x1 conv changes the width
                self.ups.append(get_conv(spatial_dims)(width, c, 1))
            else:
                self.ups.append(get_conv(spatial_dims, transpose=True)(width, c, 2, stride=2))
            self.decoders.append(conv(2 * c if skip else c, c))
            width = c
        self.head = get_conv(spatial_dims)(width, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            feats.append(x)
        for up, dec, ref in zip(self.ups, self.decoders, reversed(feats[:-1]), strict=True):
            x = match_size(up(x), ref.shape[2:])  # (B, C_level, *spatial_level)
            x = dec(torch.cat([ref, x], dim=1) if self.skip else x)
        return self.head(x)  # (B, K, *spatial)


register_model(
    "seg_fcn",
    task="segmentation",
    description="Tiny encoder-decoder FCN segmenter (2-D/3-D) with an optional skip.",
    example=dict(kwargs=dict(in_channels=1, num_classes=3), input=(2, 1, 9, 7), dtype="float",
                 output=(2, 3, 9, 7)),
)(SegFCN)
