"""Gradient clipping and a recorder of gradient-norm statistics.

- Clipping by global L2 norm (Pascanu et al. 2013, "On the difficulty of training recurrent
  neural networks"): if ``||g|| > max``, ``g <- g * max / ||g||``.
- Clipping by value (element-wise ``clamp(g, -max, max)``; Mikolov 2012 thesis).

Both use ``torch.nn.utils`` (foreach kernels). The pre-clip norm is always returned, because
the gradient-norm history tells whether a clipping threshold binds rarely (a safety net) or on
every step (then it acts as a smaller learning rate) — :class:`GradNormStats` records it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

_MODES = ("none", "norm", "value")


def total_norm(grads: list[Tensor]) -> Tensor:
    """Total L2 norm of ``grads`` as a 0-d tensor (no host sync).

    One fused ``_foreach_norm`` when all gradients share a device and dtype;
    ``torch.nn.utils.get_total_norm`` first groups tensors by device and dtype, a per-step
    Python cost that is noticeable next to the norms of a small model.
    """
    if not grads:
        return torch.zeros(())
    if len({(g.device, g.dtype) for g in grads}) > 1:
        return torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def clip_gradients(
    parameters: Iterable[Tensor] | Tensor, mode: str, max_value: float
) -> tuple[Tensor, bool]:
    """Clips gradients in place and reports the norm they had before.

    Args:
        parameters: parameters (or one tensor) whose ``.grad`` to clip; those without a
            gradient are skipped.
        mode: ``"none"`` (only measure), ``"norm"`` (global L2 norm at most ``max_value``) or
            ``"value"`` (every element within ``[-max_value, max_value]``).
        max_value: the threshold (unused for ``"none"``).

    Returns:
        ``(total_norm, clipped)``: the total L2 norm of all gradients before clipping, as a 0-d
        tensor on the gradients' device (no host sync), and whether clipping changed anything
        (norm mode: ``total_norm > max_value``; value mode: some ``|g| > max_value``). Computing
        ``clipped`` syncs with the device in the clipping modes. A non-finite norm gives
        ``clipped=False`` for NaN and ``True`` for Inf; check the norm with
        ``torch.isfinite`` before stepping.
    """
    if mode not in _MODES:
        raise ValueError(f"Unknown clip mode {mode!r}; choose one of {', '.join(_MODES)}.")
    if mode != "none" and not max_value > 0:
        raise ValueError(f"max_value must be positive for mode {mode!r}, got {max_value}.")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if mode == "norm":
        total = torch.nn.utils.clip_grad_norm_(params, max_value)
        return total, bool(total > max_value)
    total = total_norm(grads)
    if mode == "none" or not grads:
        return total, False
    clipped = bool(torch.nn.utils.get_total_norm(grads, norm_type=math.inf) > max_value)
    if clipped:
        torch.nn.utils.clip_grad_value_(params, max_value)
    return total, clipped


class GradNormStats:
    """Records the pre-clip gradient norm and the clipped flag of every optimizer step.

    Recording appends two Python values; percentiles are computed only when asked for.
    The state dict holds two tensors, so a resumed run keeps its history.
    """

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.clipped: list[bool] = []

    def record(self, norm: Tensor | float, clipped: bool | Tensor) -> None:
        """Adds one step (``norm.item()`` syncs once if ``norm`` lives on a GPU)."""
        self.norms.append(float(norm))
        self.clipped.append(bool(clipped))

    def __len__(self) -> int:
        return len(self.norms)

    @property
    def fraction_clipped(self) -> float:
        """Share of recorded steps whose gradients were clipped (0 with no steps)."""
        return sum(self.clipped) / len(self.clipped) if self.clipped else 0.0

    def percentiles(self) -> dict[str, float]:
        """``p50``, ``p90``, ``p99`` and ``max`` of the finite norms (linear interpolation).

        NaN when no finite norm was recorded; ``nonfinite`` counts the steps left out.
        """
        a = np.asarray(self.norms, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size:
            p50, p90, p99 = np.percentile(finite, [50, 90, 99])
            out = {"p50": p50, "p90": p90, "p99": p99, "max": finite.max()}
        else:
            out = dict.fromkeys(("p50", "p90", "p99", "max"), math.nan)
        return {k: float(v) for k, v in out.items()} | {"nonfinite": float(a.size - finite.size)}

    def summary(self) -> dict[str, float]:
        """Percentiles, fraction clipped and number of steps, for logging."""
        return self.percentiles() | {
            "fraction_clipped": self.fraction_clipped,
            "steps": float(len(self)),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "norms": torch.tensor(self.norms, dtype=torch.float64),
            "clipped": torch.tensor(self.clipped, dtype=torch.bool),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        norms, clipped = state["norms"], state["clipped"]
        if len(norms) != len(clipped):
            raise ValueError("GradNormStats state has norms and clipped flags of different length.")
        self.norms = [float(x) for x in torch.as_tensor(norms).tolist()]
        self.clipped = [bool(x) for x in torch.as_tensor(clipped).tolist()]
