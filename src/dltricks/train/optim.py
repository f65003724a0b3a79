"""Optimizers from a recipe, with biases and normalization parameters excluded from weight decay.

- SGD with momentum and Nesterov momentum (Sutskever et al. 2013, "On the importance of
  initialization and momentum in deep learning").
- Adam (Kingma & Ba 2015) with L2 regularisation folded into the gradient, and AdamW
  (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"), whose decay shrinks the
  weights directly.
- RMSprop (Tieleman & Hinton 2012, lecture 6.5).

Excluding biases and normalization scales/shifts from weight decay follows the practice of
Goyal et al. 2017 ("Accurate, Large Minibatch SGD") and He et al. 2019 ("Bag of Tricks"): these
parameters do not contribute to overfitting the way weight matrices do, and decaying the scale of
a normalization layer fights the normalization itself.

The optimizers are torch.optim's (their foreach implementations are fast); this module only
builds the parameter groups and maps the recipe onto constructor arguments.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dltricks.train.recipe import OptimizerConfig

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


def is_norm_module(module: nn.Module) -> bool:
    """True for normalization layers: torch's norms and any class whose name ends in "Norm"."""
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith("Norm")


def param_groups(
    model: nn.Module, weight_decay: float, no_decay_bias_norm: bool = True
) -> list[dict[str, Any]]:
    """Splits the trainable parameters of ``model`` into a decayed and a non-decayed group.

    With ``no_decay_bias_norm`` a parameter gets ``weight_decay=0`` when any of these holds:

    - it belongs directly to a normalization layer (see :func:`is_norm_module`: BatchNorm,
      InstanceNorm, LayerNorm, GroupNorm, LocalResponseNorm, or any class named ``*Norm`` such
      as RMSNorm), whatever its shape;
    - it has at most one dimension (biases, norm scales, LayerScale gains, scalar temperatures);
    - its attribute name is ``bias`` (a bias of any shape).

    Everything else (weight matrices, convolution kernels, embeddings) is decayed. Parameters
    with ``requires_grad=False`` are left out, a parameter shared by several modules appears once,
    and empty groups are dropped. Each group carries a ``name`` key ("decay" or "no_decay"),
    which torch optimizers keep and ignore.

    Args:
        model: the network.
        weight_decay: decay of the decayed group.
        no_decay_bias_norm: when False (or when ``weight_decay`` is 0), all parameters go into
            one group.

    Returns:
        A list of parameter-group dicts for a ``torch.optim`` optimizer.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    norm_params: set[int] = set()
    for module in model.modules():
        if is_norm_module(module):
            norm_params.update(id(p) for p in module.parameters(recurse=False))

    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():  # shared parameters are yielded once
        if not p.requires_grad:
            continue
        exempt = id(p) in norm_params or p.ndim <= 1 or name.rsplit(".", 1)[-1] == "bias"
        # with no decay at all one group does: fewer groups, less per-step optimizer overhead
        split = no_decay_bias_norm and weight_decay > 0
        (no_decay if split and exempt else decay).append(p)

    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """Builds the optimizer a recipe asks for over the parameter groups of :func:`param_groups`.

    ``adam`` adds ``weight_decay * w`` to the gradient (L2 regularisation, scaled by Adam's
    adaptive step); ``adamw`` multiplies the weights by ``1 - lr * weight_decay`` each step,
    independent of the gradient statistics.

    Args:
        model: the network.
        cfg: the recipe's optimizer section.

    Returns:
        A ``torch.optim`` optimizer whose ``lr`` is the peak learning rate of the schedule.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_bias_norm)
    if not groups:
        raise ValueError("The model has no parameters with requires_grad=True to optimize.")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum
        )
    raise ValueError(
        f"Unknown optimizer {cfg.name!r}; choose one of 'sgd', 'adam', 'adamw', 'rmsprop'."
    )
