"""Where the lab's units run: in this process, in local worker processes, or as Ray tasks.

A *unit* is one (experiment, arm, seed) training run. Units are independent and deterministic
given their recipe, so they can run anywhere; the driver (:func:`dltricks.lab.runner.run_lab`)
alone writes result files, as results arrive. Three backends, one interface
(``submit(task) -> future``, ``wait(pending) -> (done, pending)``, ``capacity``):

* :class:`SerialBackend`: in this process, one after the other (tests, debugging).
* :class:`ProcessBackend`: ``concurrent.futures.ProcessPoolExecutor`` with *spawn* workers
  (fork after torch has started its OpenMP pool can deadlock), each with one torch thread, so
  ``--workers N`` on N cores runs N units at once without fighting over cores.
* :class:`RayBackend`: each unit a Ray task (``num_cpus=1``) on an existing cluster
  (``ray start --head`` / ``ray start --address``) or a local instance. Results come back as
  values; a task writes its run folder into a temporary directory on whichever node runs it, so
  no shared filesystem is assumed.

Every backend runs a unit with the same number of torch threads (``threads``, default 1), so a
parallel run's metrics equal a serial run's exactly (tested).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import pickle
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dltricks.lab.experiment import EXPERIMENTS, Experiment, get_experiment
from dltricks.lab.unit import DataCache, run_unit
from dltricks.utils.io import scratch_writes


@dataclass(frozen=True)
class UnitTask:
    """One unit to run, in a form that crosses process and machine boundaries.

    Args:
        exp_id: the experiment's registry id.
        arm: arm name.
        seed: seed.
        profile: budget profile.
        run_dir: where the unit's run folder goes (the driver's path; Ray tasks use a
            temporary folder on their node instead).
        data: user dataset config, or None.
        exp_blob: the pickled experiment when it is not the registered one (e.g. built in a
            test, or a subset of a registered experiment's arms); None otherwise.
        threads: torch threads for the unit.
    """

    exp_id: str
    arm: str
    seed: int
    profile: str
    run_dir: str
    data: Mapping[str, Any] | None = None
    exp_blob: bytes | None = None
    threads: int = 1

    @property
    def name(self) -> str:
        return f"{self.arm}/s{self.seed}"


def make_task(exp: Experiment, arm: str, seed: int, profile: str, run_dir: Path,
              data: Mapping[str, Any] | None, threads: int) -> UnitTask:
    """A :class:`UnitTask` naming the registered experiment where it defines this arm alike."""
    blob = None
    try:
        registered = get_experiment(exp.id) if exp.id in _registered_ids() else None
    except ValueError:
        registered = None
    if registered is None or _arm_or_none(registered, arm) != exp.arm(arm) \
            or registered.unit != exp.unit or registered.base != exp.base:
        try:
            blob = pickle.dumps(exp)
        except Exception as err:  # lambdas in arms of an unregistered experiment
            raise ValueError(
                f"Experiment {exp.id!r} is not registered and cannot be pickled for worker "
                f"processes ({type(err).__name__}: {err}); register it or use --workers 1."
            ) from None
    return UnitTask(exp.id, arm, seed, profile, str(run_dir),
                    dict(data) if data is not None else None, blob, threads)


def _registered_ids() -> list[str]:
    from dltricks.lab.experiment import list_experiments

    list_experiments()  # loads the built-in experiments
    return EXPERIMENTS.names()


def _arm_or_none(exp: Experiment, arm: str):
    try:
        return exp.arm(arm)
    except ValueError:
        return None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Runs the block on ``n`` torch threads, restoring the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_CACHE = None  # one dataset cache per worker process


def set_cache(cache: Any) -> None:
    """Makes units run in this process use ``cache`` (a :class:`~dltricks.lab.runner.DataCache`)."""
    global _CACHE
    _CACHE = cache


def execute(task: UnitTask, run_dir: str | None = None) -> dict[str, Any]:
    """Runs one unit and returns its result record; an exception becomes an error record.

    Args:
        task: the unit.
        run_dir: overrides ``task.run_dir`` (Ray tasks run in a temporary folder).
    """
    global _CACHE
    if _CACHE is None:
        _CACHE = DataCache()
    exp = pickle.loads(task.exp_blob) if task.exp_blob else get_experiment(task.exp_id)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        # a unit's folder is scratch (an interrupted unit starts again from an empty one):
        # its checkpoints need not be fsynced; the driver's result files still are
        with torch_threads(task.threads), scratch_writes():
            res = run_unit(exp, task.arm, task.seed, task.profile,
                           Path(run_dir or task.run_dir), _CACHE, task.data)
    except Exception as err:  # isolate: record and go on
        res = {"arm": task.arm, "seed": task.seed, "status": "error",
               "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
               "seconds": time.perf_counter() - t0}
    # CPU seconds of this process: the unit's cost, whatever else keeps the machine busy
    res["cpu_seconds"] = time.process_time() - c0
    res["load1"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    res["worker"] = os.getpid()
    return res


def _init_worker(threads: int) -> None:
    # Before numba or torch start their pools in this fresh (spawned) process.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    try:  # numpy's BLAS may already be loaded (spawn imports the parent's main module)
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass


class SerialBackend:
    """Runs each unit in this process when submitted (a completed future)."""

    def __enter__(self) -> SerialBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, task: UnitTask) -> cf.Future:
        fut: cf.Future = cf.Future()
        fut.set_result(execute(task))
        return fut

    capacity = 1

    def wait(self, pending: list[cf.Future]) -> tuple[list[cf.Future], list[cf.Future]]:
        return list(pending), []


class ProcessBackend:
    """Local worker processes (spawned), one torch thread each by default."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}.")
        self.workers = workers
        self.threads = threads
        self._pool: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> ProcessBackend:
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(self.threads,))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._pool is not None
        # on an interrupt, do not wait for queued units
        self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)

    def submit(self, task: UnitTask) -> cf.Future:
        assert self._pool is not None
        return self._pool.submit(execute, task)

    @property
    def capacity(self) -> int:
        return 2 * self.workers  # keep every worker busy, but stop quickly on max_units

    def wait(self, pending: list[cf.Future]) -> tuple[list[cf.Future], list[cf.Future]]:
        done, rest = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        return list(done), list(rest)


def _ray_execute(task: UnitTask) -> dict[str, Any]:
    """A Ray task: runs the unit in a temporary folder on its node and returns the record."""
    tmp = tempfile.mkdtemp(prefix="dltricks-unit-")
    try:
        _init_worker(task.threads)
        res = execute(task, run_dir=str(Path(tmp) / "run"))
        res["run_dir"] = task.run_dir  # where the driver would have put it
        res["node"] = os.uname().nodename
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayBackend:
    """Units as Ray tasks (``num_cpus=1`` each) on a cluster.

    Args:
        address: ``"auto"`` (the cluster this machine joined), ``"ray://host:port"`` or
            ``"host:port"`` of a head node, or ``"local"`` to start a private instance on this
            machine with ``num_cpus`` CPUs.
        num_cpus: CPUs of a ``"local"`` instance.
    """

    def __init__(self, address: str, num_cpus: int | None = None, threads: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--ray needs Ray: pip install 'dltricks[ray]'.") from None
        self.ray = ray
        self.address = address
        self.num_cpus = num_cpus
        self.threads = threads
        self._started = False

    def __enter__(self) -> RayBackend:
        ray = self.ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            try:
                if self.address == "local":
                    ray.init(num_cpus=self.num_cpus, **kwargs)
                else:
                    ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ValueError(
                    f"Could not connect to the Ray cluster at {self.address!r} ({err}). Start "
                    "one with `ray start --head` (and `ray start --address HEAD:6379` on the "
                    "other machines), or use --ray local."
                ) from None
            self._started = True
        self._remote = ray.remote(num_cpus=1, max_retries=1)(_ray_execute)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.ray.shutdown()

    def submit(self, task: UnitTask) -> Any:
        return self._remote.remote(task)

    @property
    def capacity(self) -> int:
        return 4 * int(self.ray.cluster_resources().get("CPU", 1))

    def wait(self, pending: list[Any]) -> tuple[list[Any], list[Any]]:
        done, rest = self.ray.wait(pending, num_returns=1)
        return list(done), list(rest)

    def result(self, ref: Any) -> dict[str, Any]:
        return self.ray.get(ref)


def result_of(backend: Any, fut: Any) -> dict[str, Any]:
    """The unit record of a finished future (a Ray object ref or a concurrent future)."""
    if isinstance(backend, RayBackend):
        return backend.result(fut)
    return fut.result()


def make_backend(workers: int = 1, ray: str | None = None, threads: int = 1):
    """The backend for ``--workers`` / ``--ray``."""
    if ray:
        return RayBackend(ray, num_cpus=max(workers, 1), threads=threads)
    if workers <= 1:
        return SerialBackend()
    return ProcessBackend(workers, threads)


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


__all__ = [
    "ProcessBackend",
    "RayBackend",
    "SerialBackend",
    "UnitTask",
    "default_workers",
    "execute",
    "make_backend",
    "make_task",
    "result_of",
    "set_cache",
    "torch_threads",
]
