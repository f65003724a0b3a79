"""Channel and spatial attention for CNN feature maps.

* ``SqueezeExcitation``: Hu et al. 2018, "Squeeze-and-Excitation Networks": global average pool
  ("squeeze") → bottleneck MLP (as 1x1 convs) → sigmoid gates, one per channel ("excitation").
* ``CBAM``: Woo et al. 2018, "CBAM: Convolutional Block Attention Module": channel attention from
  a shared MLP on both the average- and the max-pooled descriptor, then spatial attention from a
  k x k conv (k = 7 in the paper) over the channel-wise mean and max maps.

Both gates depend on the whole feature map (global pooling), so a network using them has a
global context component; the receptive-field analysis reports it.

Axis letters: B batch, C channels, *spatial the 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dltricks.nn.factory import ActSpec, _check_spatial_dims, get_act, get_conv


def _hidden(channels: int, reduction: int) -> int:
    if channels < 1 or reduction < 1:
        raise ValueError(
            f"channels and reduction must be positive, got channels={channels}, "
            f"reduction={reduction}."
        )
    return max(1, channels // reduction)


def _spatial_axes(spatial_dims: int) -> tuple[int, ...]:
    # fixed at construction: x.ndim is not a Python int under torch.fx tracing
    return tuple(range(2, 2 + spatial_dims))


class SqueezeExcitation(nn.Module):
    """``x * sigmoid(W2 act(W1 mean(x)))`` with a hidden width of ``channels // reduction``.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: C.
        reduction: bottleneck ratio r (16 in the paper).
        act: activation of the bottleneck.

    Shapes:
        (B, C, *spatial) → (B, C, *spatial)
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16,
                 act: ActSpec = "relu") -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        hidden = _hidden(channels, reduction)
        conv = get_conv(spatial_dims)
        self.fc1 = conv(channels, hidden, 1)
        self.act = get_act(act)
        self.fc2 = conv(hidden, channels, 1)
        self.axes = _spatial_axes(spatial_dims)

    def forward(self, x: Tensor) -> Tensor:
        squeezed = x.mean(dim=self.axes, keepdim=True)  # (B, C, 1, ...)
        gate = torch.sigmoid(self.fc2(self.act(self.fc1(squeezed))))  # (B, C, 1, ...)
        return x * gate


class ChannelAttention(nn.Module):
    """CBAM channel gate: ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with a shared MLP.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: C.
        reduction: bottleneck ratio r.
        act: activation of the MLP.

    Shapes:
        (B, C, *spatial) → (B, C, 1, ...) gates
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16,
                 act: ActSpec = "relu") -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        hidden = _hidden(channels, reduction)
        conv = get_conv(spatial_dims)
        self.mlp = nn.Sequential(conv(channels, hidden, 1, bias=False), get_act(act),
                                 conv(hidden, channels, 1, bias=False))
        self.axes = _spatial_axes(spatial_dims)

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(x.mean(dim=self.axes, keepdim=True))  # (B, C, 1, ...)
        return torch.sigmoid(avg + self.mlp(x.amax(dim=self.axes, keepdim=True)))


class SpatialAttention(nn.Module):
    """CBAM spatial gate: ``sigmoid(conv_k([mean_c(x), max_c(x)]))``.

    Args:
        spatial_dims: 1, 2 or 3.
        kernel_size: odd kernel size of the conv (7 in the paper).

    Shapes:
        (B, C, *spatial) → (B, 1, *spatial) gates
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}.")
        self.conv = get_conv(spatial_dims)(2, 1, kernel_size, padding=kernel_size // 2,
                                           bias=False)

    def forward(self, x: Tensor) -> Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))  # (B, 1, *spatial)


class CBAM(nn.Module):
    """Channel attention, then spatial attention, each multiplied into the features.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: C.
        reduction: channel-MLP bottleneck ratio.
        kernel_size: spatial-attention kernel size.
        act: activation of the channel MLP.

    Shapes:
        (B, C, *spatial) → (B, C, *spatial)
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16,
                 kernel_size: int = 7, act: ActSpec = "relu") -> None:
        super().__init__()
        self.channel = ChannelAttention(spatial_dims, channels, reduction, act)
        self.spatial = SpatialAttention(spatial_dims, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)


def get_cnn_attention(kind: str | None, spatial_dims: int, channels: int) -> nn.Module:
    """``None``/``"none"`` → identity, ``"se"`` → ``SqueezeExcitation``, ``"cbam"`` → ``CBAM``."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "se":
        return SqueezeExcitation(spatial_dims, channels)
    if kind == "cbam":
        return CBAM(spatial_dims, channels)
    raise ValueError(f"Unknown attention {kind!r}; allowed: 'se', 'cbam', 'none' or None.")
