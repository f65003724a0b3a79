"""Training losses: cross-entropy with label smoothing, and soft Dice for segmentation.

- Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7): the
  target becomes ``(1 - eps) * onehot + eps / K``, so the loss is
  ``(1 - eps) * nll + eps * mean_k(-log p_k)``. ``F.cross_entropy`` implements it for index and
  probability targets (mixup/cutmix give the latter).
- Soft Dice loss (Milletari et al. 2016, "V-Net"), in the squared-free form
  ``1 - (2 sum p*g + eps) / (sum p + sum g + eps)`` per sample and class, as MONAI's
  ``DiceLoss`` computes it; written here so training does not depend on monai being installed.
- Dice + cross-entropy (as in nnU-Net, Isensee et al. 2021).

Axis letters: B batch, K classes, L sequence positions, V vocabulary, ``*`` spatial axes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def _check_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")


def classification_loss(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy with optional label smoothing.

    Args:
        logits: (B, K) scores, or (B, K, L) for per-position classes.
        target: (B,) / (B, L) class indices (positions equal to -100 are ignored), or float
            probabilities of the logits' shape (mixup, cutmix, distillation).
        label_smoothing: eps in [0, 1).

    Returns:
        A 0-d tensor.
    """
    _check_smoothing(label_smoothing)
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (B, K, ...), got {tuple(logits.shape)}.")
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(
                f"Probability targets must match the logits' shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}."
            )
    elif target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"Index targets for logits {tuple(logits.shape)} must have shape "
            f"{tuple(logits.shape[:1] + logits.shape[2:])}, got {tuple(target.shape)}."
        )
    return F.cross_entropy(
        logits, target, label_smoothing=label_smoothing, ignore_index=IGNORE_INDEX
    )


def sequence_loss(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean next-token cross-entropy over the positions whose target is not -100.

    Args:
        logits: (B, L, V) scores.
        target: (B, L) token indices; -100 marks positions without a target (padding, prompt).
        label_smoothing: eps in [0, 1).

    Returns:
        A 0-d tensor; NaN if every position is ignored (as ``F.cross_entropy``).
    """
    _check_smoothing(label_smoothing)
    if logits.ndim != 3 or target.shape != logits.shape[:2]:
        raise ValueError(
            f"sequence_loss needs logits (B, L, V) and target (B, L), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}."
        )
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        label_smoothing=label_smoothing,
        ignore_index=IGNORE_INDEX,
    )


def _check_seg(logits: Tensor, target: Tensor) -> None:
    if logits.ndim < 3 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"Segmentation needs logits (B, K, *spatial) and target (B, *spatial), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}."
        )
    if target.is_floating_point():
        raise ValueError("Segmentation targets must be integer class labels.")


def soft_dice_loss(
    logits: Tensor, target: Tensor, eps: float = 1e-5, include_background: bool = False
) -> Tensor:
    """Soft Dice loss between softmax probabilities and one-hot labels.

    Dice is computed per sample and class over the spatial axes, then averaged; class 0 is the
    background and is left out unless ``include_background``. Probabilities are computed in
    float32 whatever the logits' dtype.

    Args:
        logits: (B, K, *spatial) scores.
        target: (B, *spatial) integer labels in [0, K).
        eps: smoothing added to numerator and denominator (an empty class predicted empty has
            Dice 1).
        include_background: also score class 0.

    Returns:
        A 0-d tensor, 0 for a perfect prediction.
    """
    _check_seg(logits, target)
    num_classes = logits.shape[1]
    if not include_background and num_classes < 2:
        raise ValueError("Foreground Dice needs at least 2 classes (background + 1).")
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target.long(), num_classes).movedim(-1, 1).to(probs.dtype)
    dims = tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)  # (B, K)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * inter + eps) / (denom + eps)
    if not include_background:
        dice = dice[:, 1:]
    return 1.0 - dice.mean()


def dice_ce_loss(
    logits: Tensor,
    target: Tensor,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    label_smoothing: float = 0.0,
    include_background: bool = False,
) -> Tensor:
    """``dice_weight * soft_dice_loss + ce_weight * cross_entropy`` for segmentation.

    Args:
        logits: (B, K, *spatial) scores.
        target: (B, *spatial) integer labels.
        dice_weight: weight of the Dice term (0 turns it off).
        ce_weight: weight of the cross-entropy term (0 turns it off).
        label_smoothing: eps of the cross-entropy term.
        include_background: passed to :func:`soft_dice_loss`.
    """
    if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight == 0:
        raise ValueError(
            f"dice_weight and ce_weight must be >= 0 and not both 0, got {dice_weight} and "
            f"{ce_weight}."
        )
    _check_seg(logits, target)
    loss = logits.new_zeros((), dtype=torch.float32)
    if dice_weight > 0:
        loss = loss + dice_weight * soft_dice_loss(
            logits, target, include_background=include_background
        )
    if ce_weight > 0:
        loss = loss + ce_weight * classification_loss(logits, target.long(), label_smoothing)
    return loss
