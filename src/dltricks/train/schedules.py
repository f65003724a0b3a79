"""Learning-rate schedules as closed-form multipliers of the peak learning rate.

- Linear warmup (Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour").
- Step and multi-step decay (He et al. 2016, "Deep Residual Learning").
- Cosine annealing without restarts (Loshchilov & Hutter 2017, "SGDR").
- One-cycle (Smith & Topin 2019, "Super-Convergence"), with cosine annealing in both phases as
  PyTorch's ``OneCycleLR`` does by default (two phases, ``three_phase=False``).

Every schedule is a pure function of the step, :func:`lr_factor`, so it can be plotted, tested
against hand-computed numbers and resumed exactly. :func:`build_scheduler` wraps it in a
``LambdaLR`` whose multiplier is a small callable object holding only plain values, so the
scheduler's ``state_dict`` survives ``torch.save``/``torch.load(weights_only=True)``.

Step counting: ``step`` is the 0-based index of the optimizer step. Warmup covers steps
``0 .. warmup_steps - 1``; the schedule proper runs over the remaining
``T = total_steps - warmup_steps`` steps, indexed by ``s = step - warmup_steps``. Steps past the
end hold the schedule's value at ``s = T``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from dltricks.train.recipe import ScheduleConfig


def _check(total_steps: int, warmup_steps: int) -> None:
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}.")
    if warmup_steps >= total_steps:
        raise ValueError(
            f"schedule.warmup_steps ({warmup_steps}) must be smaller than the run's "
            f"{total_steps} optimizer steps, so that the schedule has at least one step after "
            "warmup; lower schedule.warmup_steps or train longer (train.epochs / train.steps)."
        )


def _cos_anneal(start: float, end: float, pct: float) -> float:
    """Cosine interpolation from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * pct))


def _factor(c: Mapping[str, Any], step: int, total_steps: int) -> float:
    """The closed forms; ``c`` holds the fields of a :class:`ScheduleConfig` as plain values."""
    warmup = c["warmup_steps"]
    if step < warmup:
        start = c["warmup_start_factor"]
        return start + (1.0 - start) * step / warmup
    T = total_steps - warmup
    s = min(step - warmup, T)
    name = c["name"]
    if name == "constant":
        return 1.0
    if name == "step":
        return c["gamma"] ** (s // c["step_size"])
    if name == "multistep":
        return c["gamma"] ** sum(1 for m in c["milestones"] if m <= s)
    if name == "cosine":
        lo = c["min_factor"]
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * s / T))
    if name == "onecycle":
        # PyTorch's OneCycleLR phase ends: the peak at pct_start*T - 1, the minimum at T - 1,
        # i.e. on the last step actually taken.
        first = 1.0 / c["div_factor"]
        last = first / c["final_div_factor"]
        peak_at, end_at = c["pct_start"] * T - 1.0, T - 1.0
        if s <= peak_at:
            return _cos_anneal(first, 1.0, s / peak_at if peak_at > 0 else 1.0)
        pct = (s - peak_at) / (end_at - peak_at) if end_at > peak_at else 1.0
        return _cos_anneal(1.0, last, min(pct, 1.0))
    raise ValueError(
        f"Unknown schedule {name!r}; choose one of constant, step, multistep, cosine, onecycle."
    )


def lr_factor(cfg: ScheduleConfig, step: int, total_steps: int) -> float:
    """The learning-rate multiplier (relative to the optimizer's peak ``lr``) at a step.

    After warmup, with ``s = step - warmup_steps`` and ``T = total_steps - warmup_steps``:

    - warmup (``step < warmup_steps``): ``start + (1 - start) * step / warmup_steps``;
    - ``constant``: 1;
    - ``step``: ``gamma ** (s // step_size)``;
    - ``multistep``: ``gamma ** #{milestones <= s}``; milestones count steps *after warmup*;
    - ``cosine``: ``min + (1 - min) * (1 + cos(pi * s / T)) / 2``;
    - ``onecycle``: cosine rise from ``1 / div_factor`` to 1 at ``s = pct_start * T - 1``, then
      cosine fall to ``1 / (div_factor * final_div_factor)`` at ``s = T - 1``.

    ``s`` is clamped to ``T``: past the end a schedule keeps its final value.

    Args:
        cfg: the recipe's schedule section.
        step: 0-based optimizer step.
        total_steps: number of optimizer steps of the whole run, warmup included.

    Returns:
        The multiplier, a Python float.
    """
    _check(total_steps, cfg.warmup_steps)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    return _factor(cfg.model_dump(), step, total_steps)


class ScheduleFactor:
    """Callable ``step -> factor`` for ``LambdaLR``; holds plain values only.

    ``LambdaLR.state_dict`` stores a callable object's ``__dict__`` (and drops plain functions),
    so keeping only str/int/float/list attributes here makes the scheduler state loadable with
    ``torch.load(weights_only=True)``.
    """

    def __init__(self, cfg: ScheduleConfig, total_steps: int) -> None:
        _check(total_steps, cfg.warmup_steps)
        self.cfg: dict[str, Any] = cfg.model_dump(mode="json")
        self.total_steps = int(total_steps)

    def __call__(self, step: int) -> float:
        return _factor(self.cfg, step, self.total_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int
) -> LambdaLR:
    """A ``LambdaLR`` that sets ``lr = peak_lr * lr_factor(cfg, step, total_steps)``.

    Call ``scheduler.step()`` once after every ``optimizer.step()``. To resume, load the
    optimizer's state and then the scheduler's; both are ``weights_only``-safe.

    Args:
        optimizer: optimizer whose groups' ``lr`` are the peak learning rates.
        cfg: the recipe's schedule section.
        total_steps: number of optimizer steps of the whole run, warmup included.
    """
    return LambdaLR(optimizer, lr_lambda=ScheduleFactor(cfg, total_steps))


def lr_curve(cfg: ScheduleConfig, total_steps: int, base_lr: float) -> list[float]:
    """Learning rates of steps ``0 .. total_steps - 1``, for plots and docs."""
    fn = ScheduleFactor(cfg, total_steps)
    return [base_lr * fn(step) for step in range(total_steps)]
