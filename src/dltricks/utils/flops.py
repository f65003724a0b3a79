"""One MAC counter: multiply-accumulates of a forward, from PyTorch's ``FlopCounterMode``.

``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of matmuls, convolutions and
attention kernels by their formulas (2 per multiply-accumulate), and nothing of element-wise
ops; it works on the meta device, so even large models are counted without compute. Hand-made
per-layer counts (``dltricks.analysis.complexity``) are cross-checked against it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dltricks.utils.mode import eval_mode


def macs_of(fn: Callable[[], Any]) -> int:
    """Multiply-accumulates counted while ``fn()`` runs under ``torch.no_grad`` (FLOPs // 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops()) // 2


def forward_macs(model: nn.Module, *inputs: Any, **kwargs: Any) -> int:
    """MACs of one ``model(*inputs, **kwargs)`` in eval mode (the mode is restored after)."""
    with eval_mode(model):
        return macs_of(lambda: model(*inputs, **kwargs))


__all__ = ["forward_macs", "macs_of"]
