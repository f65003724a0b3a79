"""Accuracy of a classifier at input sizes other than the training size.

Used to test spatial pyramid pooling (He et al. 2014/2015, SPP-net): a network with a
size-independent head sees a resized image as it is, one built for a single size must get it
resized back. Resizing is (bi/tri)linear, anti-aliased when shrinking 2-D images.

Axis letters: N samples, C channels, *spatial the 1-3 spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.utils.mode import eval_mode


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 64) -> Tensor:
    """Float logits of ``model`` on ``x`` in batches, in eval mode (each module's mode is
    restored)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    with eval_mode(model):
        return torch.cat([model(xb).float() for xb in x.split(batch_size)])


def resize(x: Tensor, size: int) -> Tensor:
    """Resizes (N, C, *spatial) to ``size`` on every spatial axis ((bi/tri)linear,
    anti-aliased when shrinking 2-D images)."""
    dims = x.dim() - 2
    if not 1 <= dims <= 3:
        raise ValueError(f"resize needs (N, C, *spatial) with 1-3 spatial axes, got shape "
                         f"{tuple(x.shape)}.")
    if all(s == size for s in x.shape[2:]):
        return x
    mode = ("linear", "bilinear", "trilinear")[dims - 1]
    shrink = any(s > size for s in x.shape[2:])
    return F.interpolate(x, size=(size,) * dims, mode=mode, align_corners=False,
                         antialias=shrink and dims == 2)


def accuracy_by_size(model: nn.Module, x: Tensor, y: Tensor, sizes: Sequence[int],
                     fixed_size: int | None = None) -> dict[str, float]:
    """Test accuracy with the images resized to each size in ``sizes``.

    A network that takes any size sees the resized image as it is; one built for a single size
    (``fixed_size``, e.g. a flattening head) gets it resized back to that size, the only way it
    can classify it.

    Returns:
        ``acc_size<S>`` for each S.
    """
    out = {}
    for s in sizes:
        xs = resize(x, s)
        if fixed_size is not None:
            xs = resize(xs, fixed_size)
        out[f"acc_size{s}"] = (predict(model, xs).argmax(1) == y).double().mean().item()
    return out


__all__ = ["accuracy_by_size", "predict", "resize"]
