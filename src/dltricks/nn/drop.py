"""Stochastic depth: drop whole residual branches per sample.

Huang et al. 2016, "Deep Networks with Stochastic Depth". During training each sample's branch
output is zeroed with probability ``p`` and the survivors are scaled by 1 / (1 - p), so the
expected output equals the input and evaluation is the identity (no rescaling at test time).

Axis letters: B batch, * any further axes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _check_p(p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop path probability p must be in [0, 1), got {p}.")
    return p


def drop_path(x: Tensor, p: float = 0.0, training: bool = False) -> Tensor:
    """Zeroes each sample of ``x`` (B, *) with probability ``p`` and rescales the rest.

    Returns ``x`` itself when not training or ``p == 0``.
    """
    p = _check_p(p)
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, ..., 1): one draw per sample
    mask = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth on a residual branch: use as ``x + DropPath(p)(branch(x))``.

    Args:
        p: probability of dropping a sample's branch, in [0, 1).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: Tensor) -> Tensor:  # (B, *) -> (B, *)
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
