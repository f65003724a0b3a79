"""Losses against hand formulas with numbers, and soft Dice against MONAI's DiceLoss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dltricks.train.losses import (
    classification_loss,
    dice_ce_loss,
    sequence_loss,
    soft_dice_loss,
)


def _log_softmax(row):
    z = math.log(sum(math.exp(v) for v in row))
    return [v - z for v in row]


def test_label_smoothing_hand_formula():
    row, eps = [2.0, 0.5, -1.0], 0.1
    logp = _log_softmax(row)
    nll = -logp[0]
    expected = (1 - eps) * nll + eps * sum(-v for v in logp) / 3
    got = classification_loss(torch.tensor([row]), torch.tensor([0]), label_smoothing=eps)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # log(e^2 + e^0.5 + e^-1) = 2.24131: nll 0.24131, mean -log p 1.74131 -> 0.9*0.24131 + 0.17413
    assert expected == pytest.approx(0.39131, abs=1e-5)
    assert classification_loss(torch.tensor([row]), torch.tensor([0])).item() == pytest.approx(
        nll, rel=1e-6
    )


def test_soft_targets_with_smoothing():
    row, t, eps = [1.0, 0.0, 3.0], [0.7, 0.3, 0.0], 0.2
    logp = _log_softmax(row)
    smooth = [(1 - eps) * ti + eps / 3 for ti in t]
    expected = -sum(ti * lp for ti, lp in zip(smooth, logp, strict=True))
    got = classification_loss(torch.tensor([row]), torch.tensor([t]), label_smoothing=eps)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_per_position_classes_and_shape_errors():
    logits, target = torch.randn(2, 4, 5), torch.randint(0, 4, (2, 5))
    target[0, 1] = -100
    got = classification_loss(logits, target)
    lp = logits.log_softmax(1)
    mask = target != -100
    ref = -lp.gather(1, target.clamp_min(0)[:, None])[:, 0][mask].mean()
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match="must have shape"):
        classification_loss(torch.randn(3, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="label_smoothing"):
        classification_loss(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), 1.0)


def test_sequence_loss_ignores_minus_100():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 6, 11), torch.randint(0, 11, (2, 6))
    target[0, :2] = -100
    target[1, 5] = -100
    loss = sequence_loss(logits, target)
    lp = logits.log_softmax(-1)
    mask = target != -100
    ref = -lp.gather(-1, target.clamp_min(0)[..., None])[..., 0][mask].sum() / mask.sum()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    changed = logits.clone()
    changed[0, :2] = 100 * torch.randn(2, 11)  # ignored positions do not matter
    assert sequence_loss(changed, target).item() == pytest.approx(loss.item(), rel=1e-6)


def test_dice_perfect_prediction_is_zero():
    target = torch.randint(0, 3, (2, 5, 6))
    logits = 30.0 * F.one_hot(target, 3).movedim(-1, 1).float()
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(logits, target, include_background=True).item() == pytest.approx(
        0.0, abs=1e-6
    )
    assert soft_dice_loss(-logits, target).item() > 0.9


def test_dice_hand_example():
    # one sample, two pixels; pixel 1: p(class 1) = 0.75, label 1; pixel 2: p = 0.5, label 0
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # (B=1, K=2, 2)
    target = torch.tensor([[1, 0]])
    # class 1: inter 0.75, |P| + |G| = 1.25 + 1 -> dice 2/3; class 0: inter 0.5, 0.75 + 1 -> 4/7
    fg = soft_dice_loss(logits, target, eps=0.0)
    assert fg.item() == pytest.approx(1 - 2 / 3, rel=1e-6)
    both = soft_dice_loss(logits, target, eps=0.0, include_background=True)
    assert both.item() == pytest.approx(1 - (2 / 3 + 4 / 7) / 2, rel=1e-6)


@pytest.mark.parametrize("shape", [(3, 4, 7, 5), (2, 3, 4, 5, 3)])
@pytest.mark.parametrize("background", [False, True])
def test_dice_matches_monai(shape, background):
    losses = pytest.importorskip("monai.losses")
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(shape, generator=g)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    ref = losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=background)
    got = soft_dice_loss(logits, target, include_background=background)
    assert got.item() == pytest.approx(ref(logits, target[:, None]).item(), rel=1e-5)


def test_dice_ce_sum_and_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4))
    got = dice_ce_loss(logits, target, dice_weight=0.5, ce_weight=2.0, label_smoothing=0.1)
    ref = 0.5 * soft_dice_loss(logits, target) + 2.0 * F.cross_entropy(
        logits, target, label_smoothing=0.1
    )
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    got.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not both 0"):
        dice_ce_loss(logits, target, dice_weight=0.0, ce_weight=0.0)
    with pytest.raises(ValueError, match="Segmentation needs"):
        soft_dice_loss(logits, target[:, :2])
