"""Effective receptive field by gradients.

Luo, Li, Urtasun & Zemel 2016, "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks". The ERF of a feature map is the magnitude of the gradient of its
centre unit (summed over channels) with respect to the input, averaged over random inputs. The
paper finds it roughly Gaussian and much smaller than the theoretical field, growing with the
square root of the depth.

Axis letters: B batch, C channels, *spatial the spatial axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dltricks.utils.mode import eval_mode


def _last_spatial_module(model: nn.Module, x: Tensor) -> str:
    """Name of the last leaf module (in call order) whose output keeps the input's rank."""
    calls: list[str] = []
    hooks = []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, name=name: calls.append(name)
                if isinstance(o, Tensor) and o.ndim == x.ndim and min(o.shape[2:]) > 1 else None))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if not calls:
        raise ValueError("The model has no module with a spatial output to take the ERF of.")
    return calls[-1]


def effective_receptive_field(model: nn.Module, input_shape: Sequence[int],
                              layer: str | None = None, samples: int = 4,
                              seed: int = 0) -> Tensor:
    """Mean |d (centre unit of ``layer``'s output) / d input| over random inputs.

    Args:
        model: the network (put in eval mode for the measurement, then restored).
        input_shape: (B, C, *spatial); B inputs per sample.
        layer: name of the module whose output's centre unit is used; by default the last
            module with a spatial output (e.g. the last conv before global pooling).
        samples: number of random batches averaged.
        seed: seed of the random inputs.

    Returns:
        (*spatial) heatmap normalised to a maximum of 1.

    Raises:
        ValueError: an unknown ``layer`` or a model without spatial outputs.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}.")
    gen = torch.Generator().manual_seed(seed)
    shape = tuple(input_shape)
    with eval_mode(model):
        name = layer or _last_spatial_module(model, torch.randn(shape, generator=gen))
        modules = dict(model.named_modules())
        if name not in modules:
            raise ValueError(f"Unknown layer {name!r}; use a name from model.named_modules().")
        captured: list[Tensor] = []
        hook = modules[name].register_forward_hook(lambda m, i, o: captured.append(o))
        total = torch.zeros(shape[2:])
        try:
            for _ in range(samples):
                captured.clear()
                x = torch.randn(shape, generator=gen, requires_grad=True)
                model(x)
                feat = captured[0]  # (B, C, *spatial')
                centre = tuple(s // 2 for s in feat.shape[2:])
                feat[(slice(None), slice(None), *centre)].sum().backward()
                total += x.grad.abs().sum(dim=(0, 1))  # type: ignore[union-attr]
        finally:
            hook.remove()
    return total / total.max().clamp_min(1e-30)


def erf_extent(heatmap: Tensor, mass: float = 0.95) -> int:
    """Side of the smallest centred square (cube) holding ``mass`` of the heatmap's total."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}.")
    total = heatmap.sum()
    centre = [s // 2 for s in heatmap.shape]
    for half in range(max(heatmap.shape)):
        idx = tuple(slice(max(0, c - half), c + half + 1) for c in centre)
        if heatmap[idx].sum() >= (mass - 1e-6) * total:  # rounding of the float sums
            return 2 * half + 1
    return max(heatmap.shape)
