"""Segmentation metrics beyond overall Dice: boundary F1 and lesion-wise Dice by lesion size.

* Boundary F1 (BF score): Csurka, Larlus & Perronnin 2013, "What is a good evaluation measure
  for semantic segmentation?" (BMVC): precision and recall of boundary pixels within a
  distance tolerance.
* Lesion-wise Dice: every true connected component scored against the predicted components that
  touch it, close to the BraTS 2023 lesion-wise Dice (differences in :func:`lesion_dice`), then
  averaged per lesion-size bin (:func:`dice_by_size`).

Axis letters: N images, *spatial the 1-3 spatial axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def mask_boundary(mask: Tensor) -> Tensor:
    """Inner boundary of binary masks: foreground pixels with a background face-neighbour
    (4-neighbourhood in 2-D, 6 in 3-D). Outside the image counts as neither, so the image border
    is no boundary.

    Args:
        mask: (N, *spatial) bool or {0, 1}.

    Returns:
        (N, *spatial) bool.
    """
    m = mask.bool()
    bg = ~m
    touches = torch.zeros_like(m)
    for ax in range(1, m.dim()):
        n = m.shape[ax]
        if n < 2:
            continue
        touches.narrow(ax, 0, n - 1).logical_or_(bg.narrow(ax, 1, n - 1))
        touches.narrow(ax, 1, n - 1).logical_or_(bg.narrow(ax, 0, n - 1))
    return m & touches


def dilate(mask: Tensor, radius: float) -> Tensor:
    """Pixels within Euclidean distance ``radius`` of a pixel of ``mask`` (N, *spatial)."""
    m = mask.bool()
    r = math.floor(radius)
    if r < 1:
        return m
    dims = m.dim() - 1
    grid = torch.stack(torch.meshgrid(*[torch.arange(-r, r + 1)] * dims, indexing="ij"))
    ball = ((grid.float() ** 2).sum(0) <= radius**2 + 1e-9).float()  # (2r+1,) * dims
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    out = conv(m.float().unsqueeze(1), ball[None, None], padding=r)
    return out.squeeze(1) > 0.5


def boundary_f1(pred: Tensor, target: Tensor, tolerance: float = 1.0) -> Tensor:
    """Per-image boundary F1 score (BF score, Csurka et al. 2013) of binary masks.

    A predicted boundary pixel is correct when a true boundary pixel lies within Euclidean
    distance ``tolerance`` (precision), a true boundary pixel is found when a predicted one does
    (recall); BF = 2PR / (P + R). An image where neither mask has a boundary scores 1, one where
    exactly one has a boundary scores 0.

    Args:
        pred: (N, *spatial) predicted foreground.
        target: (N, *spatial) true foreground.
        tolerance: distance in pixels.

    Returns:
        (N,) float64.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}.")
    pb, tb = mask_boundary(pred), mask_boundary(target)
    n_p = pb.flatten(1).sum(1).double()
    n_t = tb.flatten(1).sum(1).double()
    hit_p = (pb & dilate(tb, tolerance)).flatten(1).sum(1).double()
    hit_t = (tb & dilate(pb, tolerance)).flatten(1).sum(1).double()
    precision = hit_p / n_p.clamp_min(1)
    recall = hit_t / n_t.clamp_min(1)
    f1 = torch.where(precision + recall > 0,
                     2 * precision * recall / (precision + recall).clamp_min(1e-12),
                     torch.zeros_like(precision))
    f1 = torch.where((n_p == 0) & (n_t == 0), torch.ones_like(f1), f1)
    return torch.where((n_p == 0) ^ (n_t == 0), torch.zeros_like(f1), f1)


def lesion_dice(pred: Tensor, target: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Dice of every true lesion (connected component of the target, face connectivity).

    A lesion L is scored against the predicted components that touch it, P_L:
    Dice = 2 |L ∩ P_L| / (|L| + |P_L|); a missed lesion scores 0. Unlike the BraTS 2023
    lesion-wise Dice, which also scores every false-positive component as 0 and dilates the true
    lesions before matching, predicted components touching no lesion are not scored here: they
    have no true lesion size to be binned by (the overall Dice counts them).

    Args:
        pred: (N, *spatial) predicted foreground.
        target: (N, *spatial) true foreground.

    Returns:
        (sizes, dice): per lesion, its size in pixels and its Dice, over all images.
    """
    from scipy import ndimage

    sizes: list[int] = []
    dices: list[float] = []
    for p, t in zip(pred.bool().cpu().numpy(), target.bool().cpu().numpy(), strict=True):
        t_lab, n_t = ndimage.label(t)
        if n_t == 0:
            continue
        p_lab, _ = ndimage.label(p)
        for k in range(1, n_t + 1):
            lesion = t_lab == k
            touching = np.unique(p_lab[lesion])
            touching = touching[touching > 0]
            matched = np.isin(p_lab, touching) if touching.size else np.zeros_like(lesion)
            inter = np.logical_and(lesion, matched).sum()
            size = int(lesion.sum())
            sizes.append(size)
            dices.append(2.0 * inter / (size + matched.sum()))
    return np.asarray(sizes, dtype=np.int64), np.asarray(dices, dtype=np.float64)


def dice_by_size(pred: Tensor, target: Tensor, n_bins: int = 3,
                 edges: Sequence[float] | None = None) -> dict[str, Any]:
    """Mean lesion-wise Dice (:func:`lesion_dice`) per lesion-size bin.

    Args:
        pred: (N, *spatial) predicted foreground.
        target: (N, *spatial) true foreground.
        n_bins: number of bins when ``edges`` is None: the size quantiles of the true lesions
            (tertiles for 3), so the bins hold about equal numbers of lesions.
        edges: inner bin edges in pixels; a lesion of size s is in the first bin whose upper
            edge is >= s.

    Returns:
        ``dice_size1`` .. ``dice_size{n}`` (None for an empty bin), and lists ``size_edges``
        and ``lesions_per_bin``.
    """
    if edges is None and n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    sizes, dices = lesion_dice(pred, target)
    if edges is None:
        qs = np.linspace(0, 1, n_bins + 1)[1:-1]
        edges = [float(v) for v in np.quantile(sizes, qs)] if sizes.size else [math.nan] * len(qs)
    edges = list(edges)
    bins = np.searchsorted(np.asarray(edges), sizes, side="left")  # 0 .. len(edges)
    out: dict[str, Any] = {}
    counts = []
    for b in range(len(edges) + 1):
        sel = dices[bins == b]
        counts.append(int(sel.size))
        out[f"dice_size{b + 1}"] = float(sel.mean()) if sel.size else None
    out["size_edges"] = edges
    out["lesions_per_bin"] = counts
    return out


__all__ = ["boundary_f1", "dice_by_size", "dilate", "lesion_dice", "mask_boundary"]
