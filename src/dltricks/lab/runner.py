"""Runs experiments: one training run per (arm, seed), stored as it finishes, resumable.

Layout of a lab run folder::

    OUT/
        results/<experiment>.json   config, key, per-(arm, seed) results, analysis, timings
        runs/<experiment>/<arm>/s<seed>/   the Trainer's run folder (recipe, metrics.jsonl)
        results.json, report.html, report.md, figures/   written by :mod:`dltricks.lab.report`

A result file's units are valid for the hash of what determines them — its experiment's config
without the fields only the analysis reads (claims, premises, rate selection, labels) — and the
package version (:func:`~dltricks.lab.experiment.units_key`). A rerun keeps the finished (arm,
seed) units of a valid file, so an interrupted run resumes where it stopped and a repeated run
costs nothing; a changed recipe, seed list, probe, evaluator, unit source, data or version
starts the experiment afresh, a changed claim or premise only re-analyses the stored units. A
unit that raises is recorded with its error and traceback (and retried by the next run); the
other units and experiments still run.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dltricks.lab.experiment import Experiment, Profile, config_key, units_key
from dltricks.lab.results import ResultError, dump_result, load_result_file
from dltricks.lab.unit import DataCache, GradByDepth, reliability, run_function_unit, run_unit
from dltricks.lab.verdicts import analyze
from dltricks.train.run import RunLock
from dltricks.utils.io import atomic_write_text
from dltricks.utils.machine import machine_info as _machine_info


class LabInterrupted(RuntimeError):
    """Raised when ``max_units`` stops a run early (used to test resuming)."""


# --------------------------------------------------------------------------- experiments


def versions() -> dict[str, str]:
    """Versions and machine facts that results depend on (stored with every result file)."""
    return _machine_info()


def result_path(out: Path, exp_id: str) -> Path:
    return Path(out) / "results" / f"{exp_id}.json"


def load_result(out: Path, exp_id: str) -> dict[str, Any] | None:
    """The stored result of ``exp_id``, validated; None when missing, torn or invalid."""
    try:
        return load_result_file(result_path(out, exp_id)).model_dump(mode="python")
    except (FileNotFoundError, ResultError):
        return None  # a torn file from a kill, or an old layout: start the experiment again


def _save(out: Path, result: Mapping[str, Any]) -> None:
    path = result_path(out, result["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dump_result(dict(result)))


class _Counter:
    def __init__(self, max_units: int | None) -> None:
        self.max_units = max_units
        self.ran = 0
        self.reused = 0


def machine_info() -> dict[str, str]:
    """The machine and its load when an experiment starts (stored with its result)."""
    return _machine_info()


def _stored_units_key(old: Mapping[str, Any]) -> str | None:
    """The units key of a stored result, recomputed from its own config and package version
    (results written before the key was split hold only the whole config's key)."""
    try:
        return units_key(old["config"], old["versions"]["dltricks"])
    except (KeyError, TypeError):
        return None


class _ExperimentRun:
    """One experiment's result file being filled by units as they finish."""

    def __init__(self, exp: Experiment, profile: str, out: Path,
                 data: Mapping[str, Any] | None, execution: Mapping[str, Any]) -> None:
        self.exp = exp
        self.out = out
        config = exp.config(profile, data)
        key, ukey = config_key(config), units_key(config)
        old = load_result(out, exp.id)
        units: dict[str, Any] = {}
        if old is not None and _stored_units_key(old) == ukey:
            # the same runs; claims, premises or the rate selection may have changed, which
            # re-analyses them (finish)
            units = {k: u for k, u in old.get("units", {}).items() if u.get("status") == "ok"}
        self.reused = len(units)
        self.result: dict[str, Any] = {
            "id": exp.id, "key": key, "units_key": ukey, "profile": profile,
            "tips": list(exp.tips),
            "title": exp.title, "claim": exp.claim, "setup": exp.setup, "notes": exp.notes,
            "plots": list(exp.plots), "config": config, "versions": versions(),
            "machine": machine_info(), "execution": dict(execution), "units": units,
            "status": "partial", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        # the config lists the arms to train (with a learning-rate grid: one per rate)
        self.todo = [(arm["name"], seed) for seed in config["seeds"] for arm in config["arms"]
                     if f"{arm['name']}/s{seed}" not in units]
        self.running = 0

    @property
    def units(self) -> dict[str, Any]:
        return self.result["units"]

    def add(self, record: dict[str, Any]) -> None:
        self.units[f"{record['arm']}/s{record['seed']}"] = record
        self.running -= 1
        _save(self.out, self.result)

    @property
    def finished(self) -> bool:
        return not self.todo and self.running == 0

    def finish(self) -> dict[str, Any]:
        # units in the experiment's order, whatever order they finished in
        order = {f"{a['name']}/s{s}": i for i, (s, a) in enumerate(
            (s, a) for s in self.result["config"]["seeds"] for a in self.result["config"]["arms"])}
        self.result["units"] = dict(sorted(self.units.items(),
                                           key=lambda kv: order.get(kv[0], len(order))))
        self.result["analysis"] = analyze(self.result)
        self.result["status"] = "error" if self.result["analysis"]["errors"] else "complete"
        self.result["seconds"] = float(sum(u.get("seconds", 0.0) for u in self.units.values()))
        self.result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        _save(self.out, self.result)
        return self.result


def run_units(runs: Sequence[_ExperimentRun], profile: str, *, backend: Any,
              data: Mapping[str, Any] | None, counter: _Counter, threads: int = 1,
              on_unit: Callable[[_ExperimentRun, dict[str, Any]], None] | None = None,
              on_done: Callable[[_ExperimentRun, dict[str, Any]], None] | None = None) -> None:
    """Runs every pending unit of ``runs`` on ``backend``, writing results as they arrive.

    Units are submitted in experiment order and at most ``backend.capacity`` are in flight,
    so a stop (``counter.max_units``, Ctrl-C) loses at most the units running then.
    """
    from dltricks.lab.execute import make_task, result_of

    queue = [(r, arm, seed) for r in runs for arm, seed in r.todo]
    pending: dict[Any, _ExperimentRun] = {}

    def finish_if_done(r: _ExperimentRun) -> None:
        if r.finished and "analysis" not in r.result:
            res = r.finish()
            if on_done:
                on_done(r, res)

    for r in runs:
        finish_if_done(r)  # nothing to run: everything reused
    stopped = False
    while queue or pending:
        while queue and len(pending) < backend.capacity and not stopped:
            if counter.max_units is not None and counter.ran + len(pending) >= counter.max_units:
                stopped = True
                break
            r, arm, seed = queue.pop(0)
            r.todo.remove((arm, seed))
            run_dir = r.out / "runs" / r.exp.id / arm / f"s{seed}"
            task = make_task(r.exp, arm, seed, profile, run_dir, data, threads)
            r.running += 1
            pending[backend.submit(task)] = r
        if not pending:
            break
        done, rest = backend.wait(list(pending))
        for fut in done:
            r = pending.pop(fut)
            record = result_of(backend, fut)
            counter.ran += 1
            r.add(record)
            if on_unit:
                on_unit(r, record)
            finish_if_done(r)
        pending = {f: pending[f] for f in rest}
    if queue:
        for r in runs:
            _save(r.out, r.result)
        raise LabInterrupted(f"stopped after {counter.ran} units (max_units)")


def run_experiment(exp: Experiment, profile: Profile, out: str | Path, *,
                   data: Mapping[str, Any] | None = None, cache: DataCache | None = None,
                   on_unit: Callable[[str], None] | None = None,
                   counter: _Counter | None = None, workers: int = 1,
                   ray: str | None = None) -> dict[str, Any]:
    """Runs (or resumes) one experiment and stores its result file after every unit.

    Args:
        exp: the experiment.
        profile: ``"smoke" | "quick" | "full"``.
        out: the lab run folder.
        data: user dataset config ``{"name": ..., "kwargs": {...}}`` replacing the base data.
        cache: dataset cache (serial runs build each dataset once per cache).
        on_unit: called with a description after each unit (progress).
        counter: counts units run and reused; stops with :class:`LabInterrupted` at its limit.
        workers: local worker processes (1: in this process).
        ray: a Ray address (see :class:`~dltricks.lab.execute.RayBackend`), or None.

    Returns:
        The stored result dict (with ``analysis``).
    """
    from dltricks.lab import execute as ex

    out = Path(out)
    counter = counter or _Counter(None)
    if cache is not None:
        ex.set_cache(cache)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out, option="--out"):  # one driver per lab folder: results never mixed
        run = _ExperimentRun(exp, profile, out, data, {"workers": workers, "ray": ray})
        counter.reused += run.reused
        with ex.make_backend(workers, ray) as backend:
            run_units([run], profile, backend=backend, data=data, counter=counter,
                      on_unit=(lambda r, rec: on_unit(f"{exp.id} {rec['arm']}/s{rec['seed']}"))
                      if on_unit else None)
    return run.result


def data_fingerprint(path: str | Path) -> str:
    """SHA-256 of a user dataset's content: a file's bytes, or a folder's files (names and bytes).

    Part of every unit's cache key, so a changed file under the same path is never mistaken for
    the one the stored results were measured on.
    """
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def data_config(path: str | Path) -> dict[str, Any]:
    """The dataset config for ``--data PATH``: a folder → ``image_folder``, a file → ``arrays``."""
    p = Path(path)
    if p.is_dir():
        cfg = {"name": "image_folder", "kwargs": {"path": str(p)}}
    elif p.is_file() and p.suffix.lower() in (".npz", ".csv"):
        cfg = {"name": "arrays", "kwargs": {"path": str(p)}}
    else:
        raise ValueError(
            f"--data {str(p)!r} must be an image folder (one subfolder per class) or a .npz/.csv "
            "file of arrays."
        )
    cfg["sha256"] = data_fingerprint(p)
    return cfg


def fits_user_data(exp: Experiment, spatial_dims: int) -> bool:
    """Whether ``exp`` can run on a user's classification dataset of this dimensionality."""
    if exp.user_data == "any":
        return True
    return exp.user_data == "image" and spatial_dims == 2


class _Display:
    """One progress display for a whole lab run: a rich bar on a terminal, plain lines elsewhere.

    Shows units done / total, elapsed time, an ETA, and the experiments whose units are running.
    """

    def __init__(self, console: Any, total: int, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.perf_counter()
        self.live = enabled and console.is_terminal
        self.plain = enabled and not console.is_terminal
        self.bar = Progress(TextColumn("[bold]lab"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            TextColumn("{task.description}"), console=console,
                            disable=not self.live)
        self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> _Display:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def running(self, runs: Sequence[_ExperimentRun]) -> None:
        names = [r.exp.id for r in runs if r.running > 0]
        self.bar.update(self.task, description=", ".join(names[:3]) +
                        (f" +{len(names) - 3}" if len(names) > 3 else ""))

    def unit(self, run: _ExperimentRun, record: Mapping[str, Any]) -> None:
        self.done += 1
        self.bar.update(self.task, completed=self.done)
        name = f"{run.exp.id} {record['arm']}/s{record['seed']}"
        if record.get("status") != "ok":
            # every failure's reason, not just "error"
            self.console.print(f"  [red]failed[/red] {name}: {record.get('error', '?')}",
                               highlight=False, soft_wrap=True)
        if self.plain:
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / self.done * (self.total - self.done)
            self.console.print(f"[{self.done:>4}/{self.total}] {name} "
                               f"{record.get('status')} {record.get('seconds', 0.0):.1f}s "
                               f"elapsed {elapsed:.0f}s ETA {eta:.0f}s", highlight=False,
                               soft_wrap=True)

    def experiment(self, run: _ExperimentRun, result: Mapping[str, Any]) -> None:
        self.console.print(f"  {run.exp.id}: {result['analysis']['verdict']}", highlight=False)


def run_lab(experiments: Sequence[Experiment], profile: Profile, out: str | Path, *,
            data_path: str | Path | None = None, progress: bool = True,
            max_units: int | None = None, console: Any = None, workers: int = 1,
            ray: str | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """Runs experiments (units in parallel where asked), then writes results.json and the report.

    Args:
        experiments: what to run.
        profile: budget profile.
        out: the lab run folder (created; reused results in it are kept where valid).
        data_path: a user dataset; only experiments that fit it run.
        progress: show progress (a bar on a terminal, one line per unit otherwise).
        max_units: stop with :class:`LabInterrupted` after this many new units (tests).
        console: a rich console.
        workers: local worker processes, one torch thread each (1: run in this process).
        ray: run units as Ray tasks on this cluster address (``auto``, ``host:port``,
            ``local``) instead of local workers.
        batch_size: with ``data_path``, the largest batch any experiment may use (default:
            a quarter of the dataset's training split, so every epoch has >= 4 batches).

    Returns:
        The results.json dict.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for the lab run.")
    out.mkdir(parents=True, exist_ok=True)
    # one driver per lab folder: a second `lab run --out` on it would rewrite the same result
    # files with other units (the kernel drops the lock if this process dies, even by kill -9)
    with RunLock(out, option="--out"):
        return _run_lab_locked(experiments, profile, out, data_path=data_path,
                               progress=progress, max_units=max_units, console=console,
                               workers=workers, ray=ray, batch_size=batch_size)


def _run_lab_locked(experiments: Sequence[Experiment], profile: Profile, out: Path, *,
                    data_path: str | Path | None, progress: bool, max_units: int | None,
                    console: Any, workers: int, ray: str | None,
                    batch_size: int | None) -> dict[str, Any]:
    from rich.console import Console

    from dltricks.lab import execute as ex
    from dltricks.lab.report import write_report

    console = console or Console(stderr=True)
    data = None
    cache = DataCache()
    ex.set_cache(cache)
    if data_path is not None:
        data = data_config(data_path)
        splits = cache.get(data["name"], 0, data["kwargs"])
        if splits.task != "classification":
            raise ValueError(f"--data must hold a classification dataset, got {splits.task}.")
        experiments = [e for e in experiments if fits_user_data(e, splits.spatial_dims)]
        if not experiments:
            raise ValueError("None of the selected experiments applies to this dataset.")
        n_train = len(splits.train)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
        data["max_batch_size"] = min(batch_size or n_train, max(1, n_train // 4), n_train)
    elif batch_size is not None:
        raise ValueError("--batch-size applies to --data runs only (built-in experiments "
                         "keep the batch sizes their claims were designed with).")
    counter = _Counter(max_units)
    execution = {"workers": workers, "ray": ray}
    runs: list[_ExperimentRun] = []
    for exp in experiments:
        try:
            runs.append(_ExperimentRun(exp, profile, out, data, execution))
        except Exception as err:  # a broken experiment definition: record, go on
            res = {"id": exp.id, "status": "error", "profile": profile,
                   "tips": list(exp.tips), "title": exp.title, "claim": exp.claim,
                   "units": {}, "analysis": {"verdict": "error", "arms": {},
                                             "comparisons": [], "errors": [
                                                 {"arm": "", "seed": -1,
                                                  "error": f"{type(err).__name__}: {err}"}]},
                   "traceback": traceback.format_exc()}
            _save(out, res)
            console.print(f"  [red]{exp.id}: error[/red] {type(err).__name__}: {err}",
                          highlight=False)
    counter.reused = sum(r.reused for r in runs)
    total = sum(len(r.todo) for r in runs)
    t0 = time.perf_counter()
    display = _Display(console, total, progress)
    with display, ex.make_backend(workers, ray) as backend:
        display.running(runs)

        def on_unit(r: _ExperimentRun, rec: dict[str, Any]) -> None:
            display.unit(r, rec)
            display.running(runs)

        run_units(runs, profile, backend=backend, data=data, counter=counter,
                  on_unit=on_unit, on_done=display.experiment)
    summary = write_report(out, [e.id for e in experiments],
                           wall_seconds=time.perf_counter() - t0, data=data or {},
                           units_ran=counter.ran, units_reused=counter.reused)
    return summary


__all__ = [
    "DataCache",
    "GradByDepth",
    "LabInterrupted",
    "data_config",
    "data_fingerprint",
    "fits_user_data",
    "load_result",
    "machine_info",
    "reliability",
    "run_experiment",
    "run_function_unit",
    "run_lab",
    "run_unit",
    "run_units",
    "versions",
]
