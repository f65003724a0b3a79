"""Boundary F1 and lesion-wise Dice on hand-made masks with known answers."""

import numpy as np
import pytest
import torch

from dltricks.analysis.segmentation import (
    boundary_f1,
    dice_by_size,
    dilate,
    lesion_dice,
    mask_boundary,
)


def square(size: int, top: int, left: int, side: int, n: int = 1) -> torch.Tensor:
    m = torch.zeros(n, size, size, dtype=torch.bool)
    m[:, top:top + side, left:left + side] = True
    return m


def test_mask_boundary_is_the_inner_ring_and_ignores_the_image_border():
    b = mask_boundary(square(10, 2, 2, 4))
    assert b.sum() == 12 and not b[0, 3:5, 3:5].any()  # 4x4 square: 16 - 2x2 interior
    full = torch.ones(1, 5, 5, dtype=torch.bool)
    assert mask_boundary(full).sum() == 0  # touching the border only: no object boundary
    cube = torch.zeros(1, 5, 5, 5, dtype=torch.bool)
    cube[0, 1:4, 1:4, 1:4] = True
    assert mask_boundary(cube).sum() == 27 - 1


def test_dilate_by_one_pixel_is_the_cross():
    m = torch.zeros(1, 5, 5, dtype=torch.bool)
    m[0, 2, 2] = True
    d = dilate(m, 1.0)
    assert d.sum() == 5 and d[0, 1, 2] and d[0, 2, 3] and not d[0, 1, 1]
    assert dilate(m, 1.5).sum() == 9  # the diagonals are at sqrt(2)


def test_boundary_f1_perfect_empty_and_shifted():
    gt = square(12, 2, 2, 4)
    assert boundary_f1(gt, gt).item() == 1.0
    assert boundary_f1(torch.zeros_like(gt), gt).item() == 0.0
    empty = torch.zeros_like(gt)
    assert boundary_f1(empty, empty).item() == 1.0  # nothing to find, nothing found
    # shifted one pixel: every boundary pixel has a counterpart at distance 1
    assert boundary_f1(square(12, 2, 3, 4), gt, tolerance=1).item() == pytest.approx(1.0)
    # shifted two pixels: 8 of the 12 ring pixels on each side are within 1 pixel
    assert boundary_f1(square(12, 2, 4, 4), gt, tolerance=1).item() == pytest.approx(2 / 3)
    # tolerance 0: only exact matches; the 1-pixel shift keeps the top/bottom rows' overlap
    assert boundary_f1(square(12, 2, 3, 4), gt, tolerance=0).item() == pytest.approx(6 / 12)
    per_image = boundary_f1(torch.cat([gt, empty]), torch.cat([gt, gt]))
    assert per_image.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="same shape"):
        boundary_f1(gt, gt[:, :5])


def three_lesions():
    gt = torch.zeros(1, 20, 20, dtype=torch.bool)
    gt[0, 1:3, 1:3] = True      # 4 pixels
    gt[0, 1:4, 10:13] = True    # 9 pixels
    gt[0, 10:15, 10:15] = True  # 25 pixels
    pred = torch.zeros_like(gt)
    pred[0, 1:4, 10:12] = True    # 6 of the 9: Dice 2*6 / (9 + 6) = 0.8
    pred[0, 10:15, 10:15] = True  # the large one exactly
    pred[0, 18:20, 0:2] = True    # a false positive touching no lesion: not scored
    return pred, gt


def test_lesion_dice_per_connected_component():
    sizes, dice = lesion_dice(*three_lesions())
    order = np.argsort(sizes)
    assert sizes[order].tolist() == [4, 9, 25]
    assert dice[order] == pytest.approx([0.0, 0.8, 1.0])


def test_dice_by_size_bins_by_tertiles_or_given_edges():
    pred, gt = three_lesions()
    out = dice_by_size(pred, gt)
    assert (out["dice_size1"], out["dice_size2"], out["dice_size3"]) == pytest.approx(
        (0.0, 0.8, 1.0))
    assert out["lesions_per_bin"] == [1, 1, 1]
    assert out["size_edges"] == pytest.approx([4 + 5 * 2 / 3, 9 + 16 / 3])  # numpy's quantiles
    two = dice_by_size(pred, gt, edges=[10])
    assert two["dice_size1"] == pytest.approx(0.4) and two["dice_size2"] == 1.0
    assert dice_by_size(pred, gt, edges=[1, 2, 3])["dice_size2"] is None  # empty bin
