"""Evaluators: measurements taken on a trained model after a lab run, beside the test metrics.

An evaluator is a function ``fn(trainer) -> dict`` registered in :data:`EVALUATORS`. It sees the
trained :class:`~dltricks.train.trainer.Trainer` (``trainer.model``, ``trainer.data``,
``trainer.recipe``) and returns named values: numbers (int, float or None) become per-seed
metrics of the unit, so claims and the report can use them; anything else (lists, dicts) is
stored under ``probes[<evaluator name>]`` for plots. An experiment lists the evaluators it needs
by name (``Experiment(evaluators=("cost",))``).

Built in:

* ``cost`` — ``params`` (trainable + frozen), ``macs`` (multiply-accumulates of one sample's
  forward, counted by ``torch.utils.flop_counter``; FLOPs = 2 x MACs) and ``latency_ms`` (the
  fastest of 5 inference forwards of a batch of 32 test samples on this machine's CPU, after one
  warm-up; timings are noisy on shared machines, treat small differences with care).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from dltricks.registry import Registry

if TYPE_CHECKING:
    from dltricks.train.trainer import Trainer

Evaluator = Callable[["Trainer"], Mapping[str, Any]]
EVALUATORS: Registry[Evaluator] = Registry("evaluator")


def register_evaluator(name: str) -> Callable[[Evaluator], Evaluator]:
    """Decorator: ``@register_evaluator("boundary_f1")`` adds ``fn`` to :data:`EVALUATORS`."""

    def deco(fn: Evaluator) -> Evaluator:
        EVALUATORS.add(name, fn)
        return fn

    return deco


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Splits an evaluator's output into (metrics, probe data); non-finite numbers become None."""
    metrics: dict[str, float | None] = {}
    extra: dict[str, Any] = {}
    for k, v in values.items():
        if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
            metrics[k] = None if v is None or not math.isfinite(float(v)) else float(v)
        elif isinstance(v, torch.Tensor) and v.numel() == 1:
            f = float(v)
            metrics[k] = f if math.isfinite(f) else None
        else:
            extra[k] = v
    return metrics, extra


def run_evaluators(names: tuple[str, ...] | list[str], trainer: Trainer
                   ) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Runs the named evaluators on a trained model; returns (metrics, probes by evaluator)."""
    metrics: dict[str, float | None] = {}
    probes: dict[str, Any] = {}
    for name in names:
        if name not in EVALUATORS:
            raise ValueError(f"Unknown evaluator {name!r}; registered: {EVALUATORS.names()}.")
        m, extra = split_values(EVALUATORS.get(name)(trainer))
        clash = set(m) & set(metrics)
        if clash:
            raise ValueError(f"Evaluator {name!r} reports metrics already reported: {clash}.")
        metrics.update(m)
        if extra:
            probes[name] = extra
    return metrics, probes


@register_evaluator("cost")
def cost(trainer: Trainer) -> dict[str, float]:
    """Parameters, MACs of one sample's forward and CPU inference latency of a 32-sample batch."""
    import copy
    import time

    from torch.utils.flop_counter import FlopCounterMode

    from dltricks.analysis.complexity import count_parameters

    model = copy.deepcopy(trainer.model).to("cpu").float().eval()
    x = trainer.data.test.x[:32].to("cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])  # a real sample: works for images, signals and token ids alike
    macs = counter.get_total_flops() // 2
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(5):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return {"params": float(count_parameters(model)), "macs": float(macs),
            "latency_ms": min(times)}


__all__ = ["EVALUATORS", "Evaluator", "cost", "register_evaluator", "run_evaluators",
           "split_values"]
