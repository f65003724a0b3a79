"""Switching a model to eval mode for a measurement and restoring it exactly afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts ``model`` in eval mode inside the block and restores every submodule's own flag.

    ``model.train(was_training)`` would set every submodule alike, turning a deliberately frozen
    submodule (say a BatchNorm kept in eval while fine-tuning) back to training; this restores
    each module's flag as it was, also when the block raises.

    Example::

        with eval_mode(model), torch.no_grad():
            logits = model(x)
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"eval_mode needs an nn.Module, got {type(model).__name__}.")
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


__all__ = ["eval_mode"]
