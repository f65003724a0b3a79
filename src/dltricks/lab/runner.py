"""Runs experiments: one training run per (arm, seed), stored as it finishes, resumable.

Layout of a lab run folder::

    OUT/
        results/<experiment>.json   config, key, per-(arm, seed) results, analysis, timings
        runs/<experiment>/<arm>/s<seed>/   the Trainer's run folder (recipe, metrics.jsonl)
        results.json, report.html, report.md, figures/   written by :mod:`dltricks.lab.report`

A result file is valid for the hash of its experiment's config and the package version
(:func:`~dltricks.lab.experiment.config_key`). A rerun keeps the finished (arm, seed) units of a
valid file, so an interrupted run resumes where it stopped and a repeated run costs nothing; a
changed config or version starts the experiment afresh. A unit that raises is recorded with its
error and traceback (and retried by the next run); the other units and experiments still run.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import dltricks
from dltricks.lab.experiment import Experiment, Profile, config_key
from dltricks.lab.stats import combine, compare
from dltricks.train.checkpoint import atomic_write_text
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.run import read_metrics
from dltricks.train.trainer import Callback, NonFiniteError, Trainer


class LabInterrupted(RuntimeError):
    """Raised when ``max_units`` stops a run early (used to test resuming)."""


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

    was = model.training
    model.eval()
    probs = torch.cat([model(xb).float().softmax(-1) for xb in x.split(batch_size)])
    model.train(was)
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
    from rich.console import Console

    recipe = recipe_from_dict(exp.recipe(arm, seed, profile, data), source=f"{exp.id}/{arm}")
    splits = cache.get(recipe.data.name, recipe.seed, recipe.data.kwargs)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a unit interrupted half-way starts again
    t0 = time.perf_counter()
    grad_probe = GradByDepth() if "grad_by_depth" in exp.probes else None
    trainer = Trainer(recipe, run_dir=run_dir, data=splits, tensorboard=False,
                      callbacks=[grad_probe] if grad_probe else [],
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
            "val": [[r["step"], _finite_or_none(r.get("accuracy", r.get("token_accuracy",
                                                                        r.get("dice")))),
                     _finite_or_none(r.get("loss"))] for r in val],
            "lr": [[r["step"], r.get("lr")] for r in train],
        },
        "probes": probes,
        "seconds": seconds,
        "steps": trainer.step,
        "num_params": sum(p.numel() for p in trainer.model.parameters()),
        "run_dir": str(run_dir),
    }


# --------------------------------------------------------------------------- analysis


def analyze(result: Mapping[str, Any]) -> dict[str, Any]:
    """Per-arm statistics and the verdict of every claim, from a stored result alone.

    The arms and claims are read from the stored config, so ``dltricks lab report`` rebuilds
    verdicts with the current rule without the experiment's code.
    """
    from dltricks.lab.experiment import Claim

    config = result["config"]
    arm_list = [(a["name"], a["label"]) for a in config["arms"]]
    claims = [Claim(**c) for c in config["claims"]]
    units = list(result.get("units", {}).values())
    metric_names = sorted({m for u in units if u.get("status") == "ok" for m in u["metrics"]})
    arms: dict[str, Any] = {}
    for arm_name, arm_label in arm_list:
        ok = [u for u in units if u["arm"] == arm_name and u.get("status") == "ok"]
        per_metric = {}
        for m in metric_names:
            vals = [u["metrics"].get(m) for u in sorted(ok, key=lambda u: u["seed"])]
            finite = [v for v in vals if v is not None and math.isfinite(v)]
            per_metric[m] = {
                "values": vals,
                "mean": float(np.mean(finite)) if finite else None,
                "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
                "n": len(finite),
            }
        arms[arm_name] = {"label": arm_label, "n_ok": len(ok), "metrics": per_metric,
                          "seconds": float(sum(u.get("seconds", 0.0) for u in ok))}
    comparisons = []
    for c in claims:
        t = arms[c.treatment]["metrics"].get(c.metric, {}).get("values", [])
        b = arms[c.baseline]["metrics"].get(c.metric, {}).get("values", [])
        comparisons.append({"treatment": c.treatment, "baseline": c.baseline,
                            "metric": c.metric, "primary": c.primary,
                            **compare(t, b, c.direction).to_dict()})
    errors = [{"arm": u["arm"], "seed": u["seed"], "error": u.get("error", "")}
              for u in units if u.get("status") == "error"]
    primary = [c["verdict"] for c in comparisons if c["primary"]]
    verdict = "error" if errors else combine(primary)
    return {"arms": arms, "comparisons": comparisons, "verdict": verdict, "errors": errors}


# --------------------------------------------------------------------------- experiments


def versions() -> dict[str, str]:
    """Versions that results depend on (stored with every result file)."""
    return {"dltricks": dltricks.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "machine": platform.machine(),
            "torch_threads": str(torch.get_num_threads())}


def result_path(out: Path, exp_id: str) -> Path:
    return Path(out) / "results" / f"{exp_id}.json"


def load_result(out: Path, exp_id: str) -> dict[str, Any] | None:
    path = result_path(out, exp_id)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a torn file from a kill: start the experiment again


def _save(out: Path, result: Mapping[str, Any]) -> None:
    path = result_path(out, result["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1, default=str))


class _Counter:
    def __init__(self, max_units: int | None) -> None:
        self.max_units = max_units
        self.ran = 0
        self.reused = 0


def run_experiment(exp: Experiment, profile: Profile, out: str | Path, *,
                   data: Mapping[str, Any] | None = None, cache: DataCache | None = None,
                   on_unit: Callable[[str], None] | None = None,
                   counter: _Counter | None = None) -> dict[str, Any]:
    """Runs (or resumes) one experiment and stores its result file after every unit.

    Args:
        exp: the experiment.
        profile: ``"smoke" | "quick" | "full"``.
        out: the lab run folder.
        data: user dataset config ``{"name": ..., "kwargs": {...}}`` replacing the base data.
        cache: dataset cache shared between experiments.
        on_unit: called with a description after each unit (progress).
        counter: counts units run and reused; stops with :class:`LabInterrupted` at its limit.

    Returns:
        The stored result dict (with ``analysis``).
    """
    out = Path(out)
    cache = cache or DataCache()
    counter = counter or _Counter(None)
    config = exp.config(profile, data)
    key = config_key(config)
    old = load_result(out, exp.id)
    units: dict[str, Any] = {}
    if old is not None and old.get("key") == key:
        units = {k: u for k, u in old.get("units", {}).items() if u.get("status") == "ok"}
    result: dict[str, Any] = {
        "id": exp.id, "key": key, "profile": profile, "tips": list(exp.tips),
        "title": exp.title, "claim": exp.claim, "setup": exp.setup, "notes": exp.notes,
        "plots": list(exp.plots), "config": config, "versions": versions(), "units": units,
        "status": "partial",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    for seed in config["seeds"]:
        for arm in exp.arms:
            name = f"{arm.name}/s{seed}"
            if name in units:
                counter.reused += 1
                continue
            if counter.max_units is not None and counter.ran >= counter.max_units:
                _save(out, result)
                raise LabInterrupted(f"stopped after {counter.ran} units (max_units)")
            run_dir = out / "runs" / exp.id / arm.name / f"s{seed}"
            t0 = time.perf_counter()
            try:
                units[name] = run_unit(exp, arm.name, seed, profile, run_dir, cache, data)
            except Exception as err:  # isolate: record and go on
                units[name] = {"arm": arm.name, "seed": seed, "status": "error",
                               "error": f"{type(err).__name__}: {err}",
                               "traceback": traceback.format_exc(),
                               "seconds": time.perf_counter() - t0}
            counter.ran += 1
            _save(out, result)
            if on_unit:
                on_unit(f"{exp.id} {name}")
    result["analysis"] = analyze(result)
    result["status"] = "error" if result["analysis"]["errors"] else "complete"
    result["seconds"] = float(sum(u.get("seconds", 0.0) for u in units.values()))
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _save(out, result)
    return result


def data_config(path: str | Path) -> dict[str, Any]:
    """The dataset config for ``--data PATH``: a folder → ``image_folder``, a file → ``arrays``."""
    p = Path(path)
    if p.is_dir():
        return {"name": "image_folder", "kwargs": {"path": str(p)}}
    if p.is_file() and p.suffix.lower() in (".npz", ".csv"):
        return {"name": "arrays", "kwargs": {"path": str(p)}}
    raise ValueError(
        f"--data {str(p)!r} must be an image folder (one subfolder per class) or a .npz/.csv "
        "file of arrays."
    )


def fits_user_data(exp: Experiment, spatial_dims: int) -> bool:
    """Whether ``exp`` can run on a user's classification dataset of this dimensionality."""
    if exp.user_data == "any":
        return True
    return exp.user_data == "image" and spatial_dims == 2


def run_lab(experiments: Sequence[Experiment], profile: Profile, out: str | Path, *,
            data_path: str | Path | None = None, progress: bool = True,
            max_units: int | None = None, console: Any = None) -> dict[str, Any]:
    """Runs experiments one after the other, then writes results.json and the report.

    Args:
        experiments: what to run.
        profile: budget profile.
        out: the lab run folder (created; reused results in it are kept where valid).
        data_path: a user dataset; only experiments that fit it run.
        progress: show a rich progress bar.
        max_units: stop with :class:`LabInterrupted` after this many new units (tests).
        console: a rich console.

    Returns:
        The results.json dict.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dltricks.lab.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    data = None
    cache = DataCache()
    if data_path is not None:
        data = data_config(data_path)
        splits = cache.get(data["name"], 0, data["kwargs"])
        if splits.task != "classification":
            raise ValueError(f"--data must hold a classification dataset, got {splits.task}.")
        experiments = [e for e in experiments if fits_user_data(e, splits.spatial_dims)]
        if not experiments:
            raise ValueError("None of the selected experiments applies to this dataset.")
    counter = _Counter(max_units)
    total = sum(e.budget(profile).seeds * len(e.arms) for e in experiments)
    t0 = time.perf_counter()
    bar = Progress(TextColumn("[bold]lab"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.description}"),
                   console=console, disable=not progress)
    with bar:
        task = bar.add_task("", total=total)
        for exp in experiments:
            bar.update(task, description=exp.id)
            try:
                res = run_experiment(
                    exp, profile, out, data=data, cache=cache, counter=counter,
                    on_unit=lambda d: bar.advance(task),
                )
            except LabInterrupted:
                raise
            except Exception as err:  # a broken experiment definition: record, go on
                res = {"id": exp.id, "status": "error", "profile": profile,
                       "tips": list(exp.tips), "title": exp.title, "claim": exp.claim,
                       "units": {}, "analysis": {"verdict": "error", "arms": {},
                                                 "comparisons": [], "errors": [
                                                     {"arm": "", "seed": -1,
                                                      "error": f"{type(err).__name__}: {err}"}]},
                       "traceback": traceback.format_exc()}
                _save(out, res)
            bar.update(task, completed=min(total, counter.ran + counter.reused))
            console.print(f"  {exp.id}: {res['analysis']['verdict']}")
    summary = write_report(out, [e.id for e in experiments],
                           wall_seconds=time.perf_counter() - t0, data=data or {},
                           units_ran=counter.ran, units_reused=counter.reused)
    return summary


__all__ = [
    "DataCache",
    "GradByDepth",
    "LabInterrupted",
    "analyze",
    "data_config",
    "fits_user_data",
    "load_result",
    "reliability",
    "run_experiment",
    "run_lab",
    "run_unit",
    "versions",
]
