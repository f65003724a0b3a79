"""Magnitude pruning: zero the weights of smallest magnitude, over the whole model (global) or
layer by layer, and make it permanent.

Magnitude pruning follows Han et al. 2015, "Learning both Weights and Connections for Efficient
Neural Networks" (prune small weights, then fine-tune with the mask fixed) and the "global vs.
layerwise" comparison of Blalock et al. 2020, "What is the State of Neural Network Pruning?";
Zhu & Gupta 2017 ("To prune, or not to prune") show that large sparse models beat small dense
ones at equal size. The masks are ``torch.nn.utils.prune``'s: while pruned, a layer holds
``weight_orig`` and ``weight_mask`` and recomputes ``weight = weight_orig * mask`` before each
forward, so fine-tuning keeps pruned weights at zero; :func:`make_permanent` folds the mask in.

Zeros in a dense tensor do not make a saved model smaller or a dense matmul faster by
themselves: a compressed archive (:func:`dltricks.compress.compressed_state_dict_bytes`) or
sparse kernels are needed to cash them in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from dltricks.compress.select import DEFAULT_TYPES, compressible_modules

SCOPES = ("global", "layer")


def magnitude_prune(model: nn.Module, amount: float, scope: str = "global",
                    module_types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
                    exclude: Sequence[str] = (), permanent: bool = False) -> list[str]:
    """Zeros the fraction ``amount`` of weights with the smallest magnitude, in place.

    Args:
        model: any module; layers of ``module_types`` are pruned (see
            :func:`~dltricks.compress.select.compressible_modules` for what is left out).
        amount: fraction in [0, 1] of the weights (of each layer, or of all together) to zero;
            on a layer pruned before, a fraction of its remaining weights.
        scope: ``"global"`` (one magnitude threshold for all layers: layers with small weights
            lose more) or ``"layer"`` (every layer loses the same fraction).
        module_types: layer types to prune (``nn.Linear`` by default; add ``nn.Conv1d`` etc.).
        exclude: wildcard patterns of layer names to leave dense (``"lm_head"``).
        permanent: fold the masks into the weights at once (:func:`make_permanent`).

    Returns:
        Names of the pruned layers.

    Raises:
        ValueError: ``amount`` outside [0, 1], an unknown scope, or no layer to prune.
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be a fraction in [0, 1], got {amount}.")
    if scope not in SCOPES:
        raise ValueError(f"Unknown pruning scope {scope!r}; allowed: {', '.join(SCOPES)}.")
    layers = compressible_modules(model, module_types, exclude)
    if not layers:
        raise ValueError(f"No layer of type {[t.__name__ for t in module_types]} to prune.")
    if scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in layers],
                                  pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for _, m in layers:
            prune.l1_unstructured(m, "weight", amount=amount)
    if permanent:
        make_permanent(model)
    return [name for name, _ in layers]


def make_permanent(model: nn.Module) -> int:
    """Folds every pruning mask into its weight (``weight = weight_orig * mask`` becomes a plain
    parameter again), so the state dict has the original keys. Returns the number of tensors."""
    n = 0
    for module in model.modules():
        names = [h._tensor_name for h in module._forward_pre_hooks.values()
                 if isinstance(h, prune.BasePruningMethod)]
        for name in names:
            prune.remove(module, name)
            n += 1
    return n


@torch.no_grad()
def sparsity(model: nn.Module, module_types: Sequence[type[nn.Module]] = DEFAULT_TYPES,
             exclude: Sequence[str] = (), per_layer: bool = False) -> float | dict[str, float]:
    """Fraction of exact zeros among the weights of the compressible layers (all together, or a
    dict by layer name with ``per_layer``)."""
    layers = compressible_modules(model, module_types, exclude)
    if per_layer:
        return {name: float((m.weight == 0).float().mean()) for name, m in layers}
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    total = sum(m.weight.numel() for _, m in layers)
    return zeros / total if total else 0.0
