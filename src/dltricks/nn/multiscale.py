"""Multi-scale dual-pathway block in the style of DeepMedic.

Kamnitsas et al. 2017, "Efficient Multi-Scale 3D CNN with Fully Connected CRF for Accurate Brain
Lesion Segmentation". A normal-resolution pathway sees local detail; a second pathway processes
a copy of the input downsampled by ``factor`` (3 in the paper), so the same number of layers
covers ``factor`` times the context. Its output is upsampled back (by repetition, as in the
paper) and concatenated with the normal pathway's before the fused layers.

DeepMedic proper feeds each pathway its own, differently sized input segment and uses valid
convolutions. Here both pathways take the *same* input with "same" padding, so the block is a
drop-in for any size divisible by ``factor``: the low-resolution copy is an average pool of
size and stride ``factor``. Nearest-neighbour upsampling of such a pool is centred on the middle
pixel of each ``factor``-block only: the receptive-field analysis reports this misalignment of
up to ``(factor - 1) / 2`` pixels between the pathways, which DeepMedic shares.

Axis letters: B batch, C channels, *spatial the 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dltricks.nn.factory import (
    ActSpec,
    ConvNormAct,
    NormSpec,
    _check_spatial_dims,
    check_spatial_divisible,
    get_pool,
)

torch.fx.wrap("check_spatial_divisible")  # a leaf in fx traces of this module too


def conv_pathway(spatial_dims: int, in_channels: int, channels: Sequence[int],
                 kernel_size: int = 3, norm: NormSpec = "batch",
                 act: ActSpec = "prelu") -> nn.Sequential:
    """A plain stack of "same"-padded ``ConvNormAct`` layers, one per entry of ``channels``."""
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"channels must be a non-empty list of positive ints, got {channels!r}.")
    layers, width = [], in_channels
    for c in channels:
        layers.append(ConvNormAct(spatial_dims, width, c, kernel_size, norm=norm, act=act))
        width = c
    return nn.Sequential(*layers)


class DualPathway(nn.Module):
    """Normal pathway on x, low-resolution pathway on ``avgpool_factor(x)``, upsampled and
    concatenated.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        channels: widths of the convs of each pathway (both pathways use the same).
        factor: downsampling factor of the second pathway.
        kernel_size: kernel size of the convs.
        norm: normalisation spec.
        act: activation spec (PReLU in DeepMedic).

    Shapes:
        (B, in_channels, *spatial) → (B, 2 * channels[-1], *spatial); each spatial size must be
        divisible by ``factor``.
    """

    def __init__(self, spatial_dims: int, in_channels: int,
                 channels: Sequence[int] = (30, 30, 40, 40, 40, 40, 50, 50), factor: int = 3,
                 kernel_size: int = 3, norm: NormSpec = "batch", act: ActSpec = "prelu") -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be an int >= 2, got {factor!r}.")
        self.factor = factor
        self.normal = conv_pathway(spatial_dims, in_channels, channels, kernel_size, norm, act)
        self.down = get_pool("avg", spatial_dims)(factor, stride=factor)
        self.low = conv_pathway(spatial_dims, in_channels, channels, kernel_size, norm, act)
        self.up = nn.Upsample(scale_factor=factor, mode="nearest")
        self.out_channels = 2 * channels[-1]

    def forward(self, x: Tensor) -> Tensor:
        check_spatial_divisible(x, self.factor, f"DualPathway (factor={self.factor})")
        low = self.up(self.low(self.down(x)))  # (B, C, *spatial) after repetition upsampling
        return torch.cat([self.normal(x), low], dim=1)


