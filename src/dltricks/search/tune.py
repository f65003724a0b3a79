"""Hyperparameter studies on Optuna: every trial a normal training run, resumable, parallel.

One trial draws values for the keys of a :class:`~dltricks.search.space.SearchSpace`, applies them
to the base recipe, and trains it with the :class:`~dltricks.train.trainer.Trainer` into
``OUT/trials/trial_NNNN`` (a run folder like any other: recipe, metrics, checkpoints, summary).
The value is the best validation score of the space's metric over the run; after every epoch's
evaluation the trial reports it, so a pruner (median rule, Hyperband; Li et al. 2018) can stop
a poor trial early (``optuna.TrialPruned``).

Samplers (Optuna's): ``random`` (Bergstra & Bengio 2012), ``grid``, ``qmc`` (scrambled Sobol),
``tpe`` (the Tree-structured Parzen Estimator, Bergstra et al. 2011), ``gp`` (Gaussian-process
Bayesian optimisation with expected improvement) and ``cmaes`` (Hansen 2016; needs the
``cmaes`` package).

Storage. By default the study lives in a journal file, ``OUT/study.journal`` (Optuna's
``JournalStorage`` with a ``JournalFileBackend``): appends under a file lock, so several worker
processes on one machine (or on machines sharing a POSIX file system) can work on one study.
SQLite is not safe for that (concurrent writers lock the database). For many machines pass an
RDB URL (``postgresql://user:pw@host/db``): every worker started with the same URL and
``--study`` name joins the same study. Rerunning the command continues the study
(``load_if_exists``): ``--trials N`` is the number of finished trials the study should have in
total, so an interrupted study resumes and a larger N extends it.

Workers: ``workers=K`` starts K processes (one torch thread each) that pull trials from the
same study until it has N finished trials; the TPE sampler runs with the constant-liar rule so
that parallel workers do not propose the same point (Ginsbourger et al. 2010).
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dltricks.search.space import SearchSpace, SpaceError
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.trainer import Callback

SAMPLERS = ("random", "grid", "qmc", "tpe", "gp", "cmaes")
PRUNERS = ("none", "median", "hyperband")
RDB_PREFIXES = ("sqlite:", "postgresql", "postgres:", "mysql", "oracle", "mssql")


@dataclass
class TuneConfig:
    """Everything a worker needs to join the study (picklable, for worker processes).

    Args:
        base: the base recipe as a dict (already overridden).
        space: the search space as a dict (``params``, ``metric``, ``direction``).
        out: output folder (trial run folders, plots, tables, best recipe).
        trials: finished trials the study should reach in total.
        sampler: one of :data:`SAMPLERS`.
        pruner: one of :data:`PRUNERS`.
        storage: RDB URL or journal file path (default: ``OUT/study.journal``).
        study: study name (default: the recipe's name).
        seed: sampler seed (worker ``i`` uses ``seed + i``).
        workers: worker processes.
        startup_trials: random trials before TPE/GP model the objective (Optuna's default 10).
    """

    base: dict[str, Any]
    space: dict[str, Any]
    out: str
    trials: int
    sampler: str = "tpe"
    pruner: str = "none"
    storage: str | None = None
    study: str | None = None
    seed: int = 0
    workers: int = 1
    startup_trials: int | None = None
    metric: str = field(default="", init=False)
    direction: str = field(default="maximize", init=False)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}.")
        if self.pruner not in PRUNERS:
            raise ValueError(f"Unknown pruner {self.pruner!r}; use one of {', '.join(PRUNERS)}.")
        if self.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {self.trials}.")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}.")
        if self.sampler == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                raise ValueError("The cmaes sampler needs the 'cmaes' package "
                                 "(pip install cmaes); use tpe or gp otherwise.") from None
        space = self.search_space()
        space.validate(self.base)
        self.metric = space.metric or _default_metric(self.base)
        self.direction = space.direction_for(self.metric)
        if self.sampler == "grid":
            space.grid()  # raises for continuous ranges
        if self.study is None:
            self.study = str(self.base.get("name", "study"))

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space)

    @property
    def storage_url(self) -> str:
        return self.storage or str(Path(self.out) / "study.journal")


def _default_metric(base: dict[str, Any]) -> str:
    """The recipe's monitor, or its task's default validation metric."""
    monitor = (base.get("train") or {}).get("monitor")
    if monitor:
        return str(monitor).removeprefix("val/")
    from dltricks.data.base import DATASETS
    from dltricks.train.objectives import make_objective

    task = DATASETS.meta(base["data"]["name"]).get("task", "classification")
    return make_objective(task).default_monitor


def open_storage(url: str) -> Any:
    """An RDB URL as is (Optuna opens it), anything else as a journal file."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url.startswith(RDB_PREFIXES) or "://" in url:
        return optuna.storages.RDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def make_sampler(cfg: TuneConfig, worker: int = 0) -> Any:
    """The Optuna sampler of ``cfg`` for worker number ``worker``."""
    import optuna.samplers as s

    seed = cfg.seed + worker
    start = {} if cfg.startup_trials is None else {"n_startup_trials": cfg.startup_trials}
    if cfg.sampler == "random":
        return s.RandomSampler(seed=seed)
    if cfg.sampler == "grid":
        return s.GridSampler(cfg.search_space().grid(), seed=seed)
    if cfg.sampler == "qmc":
        return s.QMCSampler(seed=cfg.seed, scramble=True, warn_asynchronous_seeding=False,
                            warn_independent_sampling=False)
    if cfg.sampler == "tpe":
        return s.TPESampler(seed=seed, constant_liar=True, multivariate=True, **start)
    if cfg.sampler == "gp":
        return s.GPSampler(seed=seed, **start)
    return s.CmaEsSampler(seed=seed, **start)


def make_pruner(cfg: TuneConfig) -> Any:
    """The pruner of ``cfg``; steps are epochs (one report per evaluation).

    The median rule (Golovin et al. 2017) waits for 4 finished trials and prunes no trial in
    its first third of epochs: early epochs (a warmup) say little about the end.
    """
    import optuna.pruners as p

    epochs = int((cfg.base.get("train") or {}).get("epochs") or 10)
    if cfg.pruner == "median":
        return p.MedianPruner(n_startup_trials=4, n_warmup_steps=max(1, -(-epochs // 3)))
    if cfg.pruner == "hyperband":
        return p.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return p.NopPruner()


def create_study(cfg: TuneConfig, worker: int = 0) -> Any:
    """Creates the study, or loads it when it exists (resume, or another worker)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE and the GP sampler are marked experimental in Optuna
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna.create_study(storage=open_storage(cfg.storage_url),
                               sampler=make_sampler(cfg, worker), pruner=make_pruner(cfg),
                               study_name=cfg.study, direction=cfg.direction,
                               load_if_exists=True)


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=states))


class TrialReporter(Callback):
    """Trainer callback: reports each evaluation to the trial and stops it when pruned."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        import optuna

        if self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        self.trial.report(value, step=trainer.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {trainer.epoch} with {self.metric} "
                                     f"{value:.4f}")


def run_trial(cfg: TuneConfig, trial: Any) -> float:
    """Trains one trial's recipe into its run folder and returns its best validation value."""
    from rich.console import Console

    from dltricks.train.trainer import Trainer

    space = cfg.search_space()
    values = space.suggest(trial)
    data = space.apply(cfg.base, values)
    data.setdefault("train", {})["monitor"] = cfg.metric
    data["name"] = f"{cfg.base.get('name', 'trial')}-t{trial.number:04d}"
    recipe = recipe_from_dict(data, source=f"trial {trial.number}")
    run_dir = Path(cfg.out) / "trials" / f"trial_{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("pid", os.getpid())
    summary = Trainer(recipe, run_dir, tensorboard=False,
                      callbacks=[TrialReporter(trial, cfg.metric)],
                      console=Console(stderr=True, quiet=True)).fit()
    for k, v in summary["test"].items():
        trial.set_user_attr(f"test_{k}", float(v))
    value = summary["best_val"]
    if value is None or not math.isfinite(float(value)):
        raise ValueError(f"trial {trial.number} produced no finite {cfg.metric}")
    return float(value)


def work(cfg: TuneConfig, worker: int = 0) -> int:
    """One worker: runs trials of the study until it has ``cfg.trials`` finished ones.

    Returns:
        Trials this worker ran.
    """
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from dltricks.train.trainer import NonFiniteError

    study = create_study(cfg, worker)
    remaining = cfg.trials - _finished(study)
    if remaining <= 0:
        return 0
    before = len(study.get_trials(deepcopy=False))
    stop = MaxTrialsCallback(cfg.trials, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                 TrialState.FAIL))
    study.optimize(lambda t: run_trial(cfg, t), n_trials=remaining, callbacks=[stop],
                   catch=(NonFiniteError,), gc_after_trial=False)
    return len(study.get_trials(deepcopy=False)) - before


def _worker_main(cfg: TuneConfig, worker: int) -> None:
    import torch

    torch.set_num_threads(1)
    work(cfg, worker)


def tune(cfg: TuneConfig) -> dict[str, Any]:
    """Runs (or resumes) the study with ``cfg.workers`` processes and writes its outputs.

    Returns:
        The summary written to ``OUT/summary.json`` (best value, params, trial counts, files).
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "space.yaml").write_text(yaml.safe_dump(cfg.space, sort_keys=False))
    (out / "base_recipe.yaml").write_text(yaml.safe_dump(cfg.base, sort_keys=False))
    create_study(cfg)  # one creation before the workers race for it
    if cfg.workers == 1:
        work(cfg)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(cfg, i), daemon=False)
                 for i in range(cfg.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"{len(bad)} of {cfg.workers} tuning workers failed "
                               f"(exit codes {bad}); the study keeps their finished trials.")
    return write_outputs(cfg)


# --------------------------------------------------------------------------- outputs


def trial_rows(study: Any, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, decoded params, duration, run folder."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        dur = t.duration.total_seconds() if t.duration is not None else None
        row = {"number": t.number, "state": t.state.name, "value": t.value,
               "last_step": t.last_step, "seconds": dur}
        row.update(space.decode(t.params))
        row["run_dir"] = t.user_attrs.get("run_dir", "")
        rows.append(row)
    return rows


def best_recipe(cfg: TuneConfig, study: Any) -> dict[str, Any]:
    """The base recipe with the best trial's values (validated)."""
    space = cfg.search_space()
    data = space.apply(cfg.base, space.decode(study.best_trial.params))
    data.setdefault("train", {})["monitor"] = cfg.metric
    data["name"] = f"{cfg.base.get('name', 'recipe')}-tuned"
    return recipe_from_dict(data, source="best recipe").to_dict()


def write_outputs(cfg: TuneConfig) -> dict[str, Any]:
    """Writes ``trials.csv``, ``trials.md``, ``best_recipe.yaml``, ``history.png``,
    ``importance.png`` and ``summary.json`` into ``cfg.out``."""
    from optuna.trial import TrialState

    out = Path(cfg.out)
    study = create_study(cfg)
    space = cfg.search_space()
    rows = trial_rows(study, space)
    _write_tables(rows, out)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary: dict[str, Any] = {"study": cfg.study, "storage": cfg.storage_url,
                               "metric": cfg.metric, "direction": cfg.direction,
                               "sampler": cfg.sampler, "pruner": cfg.pruner,
                               "trials": counts, "best": None, "importance": None}
    if complete:
        best = study.best_trial
        recipe = best_recipe(cfg, study)
        (out / "best_recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        summary["best"] = {"number": best.number, "value": best.value,
                           "params": space.decode(best.params),
                           "run_dir": best.user_attrs.get("run_dir"),
                           "test": {k[5:]: v for k, v in best.user_attrs.items()
                                    if k.startswith("test_")}}
        plot_history(rows, cfg.direction, cfg.metric, out / "history.png")
        summary["importance"] = plot_importance(study, out / "importance.png")
    summary["config"] = {k: v for k, v in asdict(cfg).items() if k not in ("base", "space")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})
    (out / "trials.csv").write_text(buf.getvalue())
    cols = [k for k in keys if k != "run_dir"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        md.append("| " + " | ".join(_fmt(r.get(k)) for k in cols) + " |")
    (out / "trials.md").write_text("\n".join(md) + "\n")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def best_so_far(values: list[float | None], direction: str) -> list[float | None]:
    """Running best of a sequence of trial values (None for failed trials is skipped)."""
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(best)
            continue
        if best is None or (v > best if direction == "maximize" else v < best):
            best = v
        out.append(best)
    return out


def plot_history(rows: list[dict[str, Any]], direction: str, metric: str, path: Path) -> None:
    """Optimisation history: every trial's value and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["state"] == "COMPLETE"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], s=14, label="trial")
    best = best_so_far([r["value"] if r["state"] == "COMPLETE" else None for r in rows],
                       direction)
    ax.step([r["number"] for r in rows], [b if b is not None else math.nan for b in best],
            where="post", color="C3", label="best so far")
    pruned = [r["number"] for r in rows if r["state"] == "PRUNED"]
    if pruned:
        ax.scatter(pruned, [ax.get_ylim()[0]] * len(pruned), marker="x", color="grey",
                   label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"best validation {metric}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_importance(study: Any, path: Path) -> dict[str, float] | None:
    """fANOVA parameter importances (``optuna.importance``), as a bar chart; None when the
    study has too few complete trials or a single parameter value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):
        return None
    if not imp:
        return None
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(names)))
    ax.barh(names, [imp[n] for n in names])
    ax.set_xlabel("importance (fANOVA, share of variance)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {k: float(v) for k, v in imp.items()}


def load_space(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A search-space YAML file as a dict (its shape checked; keys are checked against the
    recipe by :class:`TuneConfig`)."""
    SearchSpace.from_yaml(path)
    return yaml.safe_load(Path(path).read_text())


__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SpaceError",
    "TrialReporter",
    "TuneConfig",
    "best_so_far",
    "create_study",
    "load_space",
    "make_sampler",
    "open_storage",
    "run_trial",
    "tune",
    "work",
    "write_outputs",
]
