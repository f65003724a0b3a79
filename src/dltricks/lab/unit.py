"""One unit of the lab: a single (experiment, arm, seed) run, and the probes it records.

Kept apart from the driver (:mod:`dltricks.lab.runner`) so that worker processes and Ray
tasks (:mod:`dltricks.lab.execute`) import only what runs a unit.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dltricks.lab.curves import StepClock, StopWhenSolved, target_metrics
from dltricks.lab.experiment import Experiment
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.run import read_metrics
from dltricks.train.trainer import Callback, NonFiniteError, Trainer
from dltricks.utils.mode import eval_mode

# --------------------------------------------------------------------------- probes


class GradByDepth(Callback):
    """Per-layer gradient norms of Linear/Conv weights, in forward order (Glorot & Bengio 2010).

    Hooks run right after each weight's gradient is accumulated, before the trainer clips and
    zeroes it, so the norms are the raw backpropagated ones.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sums: list[float] = []
        self.counts: list[int] = []
        self.log_ratio_sum = 0.0
        self.log_ratio_count = 0
        self._latest: list[float] = []

    def attach(self, model: nn.Module) -> None:
        layers = [(n, m) for n, m in model.named_modules()
                  if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)]
        self.names = [n for n, _ in layers]
        self.sums = [0.0] * len(layers)
        self.counts = [0] * len(layers)
        self._latest = [math.nan] * len(layers)
        for i, (_, m) in enumerate(layers):
            m.weight.register_post_accumulate_grad_hook(self._hook(i))

    def _hook(self, i: int) -> Callable[[torch.Tensor], None]:
        def fn(p: torch.Tensor) -> None:
            if p.grad is not None:
                v = float(p.grad.detach().norm())
                self._latest[i] = v
                if math.isfinite(v):
                    self.sums[i] += v
                    self.counts[i] += 1

        return fn

    def on_step_end(self, trainer: Trainer) -> None:
        # the head is the last layer; compare the first layer with the last hidden one
        if len(self._latest) >= 3:
            first, last_hidden = self._latest[0], self._latest[-2]
            if first > 0 and last_hidden > 0 and math.isfinite(first / last_hidden):
                self.log_ratio_sum += math.log10(first / last_hidden)
                self.log_ratio_count += 1

    def result(self) -> dict[str, Any]:
        means = [s / c if c else None for s, c in zip(self.sums, self.counts, strict=True)]
        ratio = self.log_ratio_sum / self.log_ratio_count if self.log_ratio_count else None
        return {"layers": self.names, "mean_norm": means, "first_last_log10": ratio}


@torch.no_grad()
def reliability(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_bins: int = 10,
                batch_size: int = 512) -> dict[str, Any]:
    """Reliability-diagram bins of ``model`` on (x, y) (Guo et al. 2017)."""
    from dltricks.train.metrics import expected_calibration_error, reliability_bins

    with eval_mode(model):
        probs = torch.cat([model(xb).float().softmax(-1) for xb in x.split(batch_size)])
    bins = reliability_bins(probs, y, n_bins)
    return {k: [None if not np.isfinite(v) else float(v) for v in arr] for k, arr in bins.items()
            } | {"ece": expected_calibration_error(probs, y, n_bins)}


# --------------------------------------------------------------------------- one unit


class DataCache:
    """Builds each (dataset, seed, kwargs) once per lab run; the splits are read-only."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, name: str, seed: int, kwargs: Mapping[str, Any]):
        from dltricks.data import create_dataset

        key = json.dumps([name, seed, kwargs], sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = create_dataset(name, seed=seed, **kwargs)
        return self._cache[key]


def _finite_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def run_unit(exp: Experiment, arm: str, seed: int, profile: str, run_dir: Path,
             cache: DataCache, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Trains one (arm, seed) and returns its metrics, curves and probe results."""
    if exp.unit is not None:
        return run_function_unit(exp, arm, seed, profile, run_dir, data)
    from rich.console import Console

    recipe = recipe_from_dict(exp.recipe(arm, seed, profile, data), source=f"{exp.id}/{arm}")
    splits = cache.get(recipe.data.name, recipe.seed, recipe.data.kwargs)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a unit interrupted half-way starts again
    t0 = time.perf_counter()
    grad_probe = GradByDepth() if "grad_by_depth" in exp.probes else None
    clock = StepClock()
    stop = (StopWhenSolved(exp.target.threshold_for(profile), exp.target.patience)
            if exp.target is not None and exp.target.patience else None)
    trainer = Trainer(recipe, run_dir=run_dir, data=splits, tensorboard=False,
                      callbacks=[c for c in (clock, grad_probe, stop) if c is not None],
                      console=Console(stderr=True, quiet=True))
    if grad_probe is not None:
        grad_probe.attach(trainer.model)
    diverged, summary, note = False, None, None
    try:
        summary = trainer.fit()
    except NonFiniteError as err:
        if not exp.divergence_ok:
            raise
        diverged, note = True, str(err)
    seconds = time.perf_counter() - t0
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("split") == "train"]
    val = [r for r in records if r.get("split") == "val"]
    train_losses = [_finite_or_none(r.get("loss")) for r in train]
    finite_losses = [v for v in train_losses if v is not None]
    metrics: dict[str, float | None] = {
        "mean_train_loss": float(np.mean(finite_losses)) if finite_losses else None,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "skipped_steps": float(summary["skipped_steps"]) if summary else None,
    }
    if summary:
        test = summary["test_last"]
        metrics.update({f"test_{k}": _finite_or_none(v) for k, v in test.items()})
        metrics.setdefault("test_loss", None)
        diverged = diverged or summary["skipped_steps"] > 0 or metrics["test_loss"] is None
    metrics["diverged"] = 1.0 if diverged else 0.0
    if val:  # the last validation evaluation: learning rates are selected on it, never on test
        metrics.update({f"val_{k}": _finite_or_none(v) for k, v in val[-1].items()
                        if k not in ("split", "step", "epoch") and not isinstance(v, str | bool)})
    val_curve = [[r["step"], _finite_or_none(r.get("accuracy", r.get("token_accuracy",
                                                                   r.get("dice")))),
                  _finite_or_none(r.get("loss"))] for r in val]
    if exp.target is not None:
        metrics.update(target_metrics(
            val_curve, recipe.train.steps or trainer.step, exp.target.threshold_for(profile),
            clock.seconds_per_step, exp.target.equal_compute_for(profile)))
    probes: dict[str, Any] = {}
    if grad_probe is not None:
        probes["grad_by_depth"] = grad_probe.result()
        metrics["grad_first_last_log10"] = probes["grad_by_depth"]["first_last_log10"]
    if "reliability" in exp.probes and summary:
        test_split = trainer.data.test
        probes["reliability"] = reliability(trainer.model, test_split.x, test_split.y)
    if exp.evaluators and summary:
        from dltricks.lab.evaluators import run_evaluators

        extra_metrics, extra_probes = run_evaluators(exp.evaluators, trainer, profile)
        metrics.update(extra_metrics)
        probes.update(extra_probes)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # keep the logs, not weights
    return {
        "arm": arm,
        "seed": seed,
        "status": "ok",
        "metrics": metrics,
        "note": note,
        "curves": {
            "train": [[r["step"], _finite_or_none(r.get("loss"))] for r in train],
            # the curve's score: accuracy, token accuracy (sequences) or Dice (segmentation)
            "val": val_curve,
            "lr": [[r["step"], r.get("lr")] for r in train],
        },
        "probes": probes,
        "seconds": seconds,
        "seconds_per_step": clock.seconds_per_step,  # median, evaluation excluded
        "steps": trainer.step,
        "num_params": sum(p.numel() for p in trainer.model.parameters()),
        "run_dir": str(run_dir),
    }


def run_function_unit(exp: Experiment, arm: str, seed: int, profile: str, run_dir: Path,
                      data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Runs one (arm, seed) of an experiment whose unit is a function (``Experiment.unit``)."""
    assert exp.unit is not None
    recipe = exp.recipe(arm, seed, profile, data)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    out = dict(exp.unit(recipe, run_dir))
    metrics = {str(k): _finite_or_none(v) for k, v in out.items()}
    metrics.setdefault("diverged", 0.0)
    records = read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    val = [r for r in records if r.get("split") == "val"]
    train = [r for r in records if r.get("split") == "train"]
    return {
        "arm": arm, "seed": seed, "status": "ok", "metrics": metrics, "note": None,
        "curves": {
            "train": [[r["step"], _finite_or_none(r.get("loss"))] for r in train],
            "val": [[r["step"], _finite_or_none(r.get("accuracy", r.get("score"))),
                     _finite_or_none(r.get("loss"))] for r in val],
            "lr": [],
        },
        "probes": {}, "seconds": time.perf_counter() - t0,
        "steps": int(recipe.get("train", {}).get("steps", 0)), "num_params": None,
        "run_dir": str(run_dir),
    }


__all__ = ["DataCache", "GradByDepth", "reliability", "run_function_unit", "run_unit"]
