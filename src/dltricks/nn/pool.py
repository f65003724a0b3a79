"""Multi-scale pooling: spatial pyramid pooling and atrous spatial pyramid pooling.

* ``SpatialPyramidPooling``: He et al. 2014/2015, "Spatial Pyramid Pooling in Deep Convolutional
  Networks for Visual Recognition". Max pooling into n x n bins for each pyramid level n (the
  paper uses {1, 2, 3, 6} or {1, 2, 4}); the bins are concatenated into a vector of length
  ``C * sum(n ** spatial_dims)`` whatever the input size. The bins are PyTorch's adaptive-pooling
  bins ``[floor(i a / n), ceil((i + 1) a / n))``, close to the paper's window ceil(a / n) with
  stride floor(a / n), and defined for inputs smaller than n too.
* ``ASPP``: Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation"
  (DeepLab v3): parallel 1x1 conv, 3x3 atrous convs at several rates (6, 12, 18 at output
  stride 16) and an image-level branch (global average pool → 1x1 conv, broadcast back), all
  concatenated and projected by a 1x1 conv.

Axis letters: B batch, C channels, *spatial the 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dltricks.nn.factory import ActSpec, ConvNormAct, NormSpec, _check_spatial_dims, get_pool


class SpatialPyramidPooling(nn.Module):
    """Fixed-length descriptor from a feature map of any size.

    Args:
        spatial_dims: 1, 2 or 3.
        levels: bins per axis of each pyramid level.
        pool: ``"max"`` (the paper) or ``"avg"``.

    Shapes:
        (B, C, *spatial) → (B, C * sum(n ** spatial_dims for n in levels))
    """

    def __init__(self, spatial_dims: int = 2, levels: Sequence[int] = (1, 2, 4),
                 pool: str = "max") -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        if not levels or any(not isinstance(n, int) or n < 1 for n in levels):
            raise ValueError(f"levels must be a non-empty list of positive ints, got {levels!r}.")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}.")
        cls = get_pool("adaptive_" + pool, spatial_dims)
        self.levels = tuple(levels)
        self.spatial_dims = spatial_dims
        self.pools = nn.ModuleList(cls(n) for n in self.levels)

    def output_features(self, channels: int) -> int:
        """Length of the output vector for ``channels`` input channels."""
        return channels * sum(n**self.spatial_dims for n in self.levels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([p(x).flatten(1) for p in self.pools], dim=1)


class ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pool → 1x1 ConvNormAct → broadcast to the map.

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial)
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 norm: NormSpec, act: ActSpec) -> None:
        super().__init__()
        self.pool = get_pool("adaptive_avg", spatial_dims)(1)
        # on a 1x1 map batch norm sees one value per sample and channel, so training needs
        # B > 1 (as in DeepLab v3); norm="layer" works at B = 1
        self.conv = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=norm, act=act)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(self.pool(x))  # (B, out_channels, 1, ...)
        # a bilinear upsampling of a 1x1 map is a broadcast; ones_like keeps it fx-traceable
        return y * torch.ones_like(x[:, :1])  # (B, out_channels, *spatial)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: channels of every branch and of the output.
        rates: dilation rates of the 3x3 branches.
        image_pooling: include the image-level (global context) branch.
        norm: normalisation spec.
        act: activation spec.
        dropout: dropout after the projection (0.1 in DeepLab v3's code).

    Shapes:
        (B, in_channels, *spatial) → (B, out_channels, *spatial)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        image_pooling: bool = True,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        if any(not isinstance(r, int) or r < 1 for r in rates):
            raise ValueError(f"rates must be positive ints, got {rates!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        branches: list[nn.Module] = [
            ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=norm, act=act)
        ]
        branches += [ConvNormAct(spatial_dims, in_channels, out_channels, 3, dilation=r,
                                 norm=norm, act=act) for r in rates]
        if image_pooling:
            branches.append(ImagePooling(spatial_dims, in_channels, out_channels, norm, act))
        self.branches = nn.ModuleList(branches)
        self.project = ConvNormAct(spatial_dims, out_channels * len(branches), out_channels, 1,
                                   norm=norm, act=act)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = torch.cat([b(x) for b in self.branches], dim=1)  # (B, n_branches * C_out, *spatial)
        return self.dropout(self.project(y))
