"""U-Net for 2-D and 3-D segmentation with switchable skip connections.

Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation" (3-D: Çiçek et al. 2016). A contracting path of two 3x3 conv layers per level with
2x max pooling, an expanding path of 2x transposed ("up-") convolutions halving the channels,
concatenation with the encoder features of the same level (the skip connections) and two 3x3
convs, and a 1x1 conv to the class logits. With ``channels=(64, 128, 256, 512, 1024)`` and no
normalisation it has the paper's layer widths; the convs here are "same"-padded (the paper's are
unpadded and crop the skips), so the output has the input's size, which must be divisible by
``2 ** (len(channels) - 1)``.

``skip=False`` removes the concatenations (the decoder convs then see only the upsampled
features), the ablation of the paper's main architectural idea.

Axis letters: B batch, C channels, K classes, *spatial the 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dltricks.models.registry import register_model
from dltricks.nn.conv_blocks import ConvStack
from dltricks.nn.factory import ActSpec, NormSpec, check_spatial_divisible, get_conv, get_pool

torch.fx.wrap("check_spatial_divisible")  # a leaf in fx traces of this module too


class UNet(nn.Module):
    """Encoder-decoder with optional skip connections.

    Args:
        in_channels: input channels.
        num_classes: K.
        spatial_dims: 2 or 3.
        channels: widths of the levels, top to bottom (the last is the bottleneck).
        skip: concatenate encoder features into the decoder.
        norm: normalisation spec (``None`` for the paper's un-normalised network).
        act: activation spec.

    Shapes:
        (B, in_channels, *spatial) → (B, K, *spatial) logits
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128), skip: bool = True,
                 norm: NormSpec = "batch", act: ActSpec = "relu") -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"UNet supports spatial_dims 2 or 3, got {spatial_dims!r}.")
        if len(channels) < 2 or any(c < 1 for c in channels):
            raise ValueError(f"channels needs at least two positive widths, got {channels!r}.")
        self.skip = skip
        self.multiple = 2 ** (len(channels) - 1)
        self.encoders = nn.ModuleList()
        width = in_channels
        for c in channels:
            self.encoders.append(ConvStack(spatial_dims, width, c, 3, 2, norm=norm, act=act))
            width = c
        self.pool = get_pool("max", spatial_dims)(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.ups.append(get_conv(spatial_dims, transpose=True)(width, c, 2, stride=2))
            dec_in = 2 * c if skip else c
            self.decoders.append(ConvStack(spatial_dims, dec_in, c, 3, 2, norm=norm, act=act))
            width = c
        self.head = get_conv(spatial_dims)(width, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_spatial_divisible(x, self.multiple, "UNet (2 ** number of poolings)")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck output is not a skip
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = up(x)
            s = skips.pop()
            x = dec(torch.cat([s, x], dim=1) if self.skip else x)
        return self.head(x)


register_model("unet", task="segmentation",
               description="U-Net (2-D/3-D) with switchable skip connections.",
               example=dict(kwargs=dict(in_channels=1, num_classes=3, channels=[4, 8, 16]),
                            input=(2, 1, 16, 12), dtype="float", output=(2, 3, 16, 12)))(UNet)


def unet3d(in_channels: int = 1, num_classes: int = 2, channels: Sequence[int] = (8, 16, 32),
           skip: bool = True, norm: NormSpec = "batch", act: ActSpec = "relu") -> UNet:
    """``UNet`` with ``spatial_dims=3``."""
    return UNet(in_channels, num_classes, 3, channels, skip, norm, act)


register_model("unet3d", task="segmentation", description="3-D U-Net (Çiçek et al. 2016).",
               example=dict(kwargs=dict(in_channels=1, num_classes=2, channels=[4, 8]),
                            input=(1, 1, 8, 8, 4), dtype="float", output=(1, 2, 8, 8, 4)))(unet3d)
