"""The run folder: one place for everything a training run produces.

::

    runs/<name>-<timestamp>/
        recipe.yaml       the resolved recipe (after overrides), enough to reproduce the run
        metrics.jsonl     one JSON record per log/eval event (train, val, test)
        checkpoints/      see :mod:`dltricks.train.checkpoint`
        summary.json      final metrics, written at the end
        tb/               TensorBoard events, when tensorboard is installed
        .lock             held (``fcntl.flock``) by the process training into the folder

Run folders never mix runs: a folder that already holds a run is refused unless the run is
resumed or explicitly overwritten (:func:`check_run_folder`), and the process that trains into
a folder holds :class:`RunLock` on it for the run's lifetime, so a second process on the same
folder fails at once with the first one's pid.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from dltricks.utils.io import atomic_write_text

LOCK_NAME = ".lock"
#: what makes a folder "hold a run"
RUN_MARKERS = ("recipe.yaml", "metrics.jsonl", "summary.json", "checkpoints")


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (holds another run, is locked, not writable)."""


def holds_run(run_dir: str | Path) -> bool:
    """True when ``run_dir`` contains any trace of a run (recipe, metrics, checkpoints)."""
    run_dir = Path(run_dir)
    return any((run_dir / m).exists() for m in RUN_MARKERS)


def check_run_folder(run_dir: str | Path, *, resume: bool = False,
                     overwrite: bool = False) -> Path:
    """Refuses a run folder that cannot take this run; returns it as a Path.

    Args:
        run_dir: the folder (need not exist yet).
        resume: the run continues what the folder holds.
        overwrite: the folder's previous run may be deleted (by :func:`clear_run_folder`).

    Raises:
        RunFolderError: the path is a file, or holds a run while neither ``resume`` nor
            ``overwrite`` is set.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"Run folder {str(run_dir)!r} is a file, not a folder; choose "
                             "another --run-dir.")
    if resume or overwrite or not holds_run(run_dir):
        return run_dir
    raise RunFolderError(
        f"Run folder {str(run_dir)!r} already holds a run; continue it with "
        f"`dltricks resume {run_dir}`, replace it with --overwrite, or choose another --run-dir."
    )


def clear_run_folder(run_dir: str | Path) -> None:
    """Deletes everything in ``run_dir`` except its lock file (call while holding the lock)."""
    for p in Path(run_dir).iterdir():
        if p.name == LOCK_NAME:
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def make_dir(path: str | Path, what: str) -> Path:
    """``mkdir -p`` with one sentence instead of an OSError traceback."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunFolderError(f"Cannot create {what} {str(path)!r}: a file is in the way.") from None
    except NotADirectoryError:
        raise RunFolderError(f"Cannot create {what} {str(path)!r}: a part of the path is a "
                             "file.") from None
    except PermissionError:
        raise RunFolderError(f"Cannot create {what} {str(path)!r}: permission denied; choose a "
                             "writable folder.") from None
    except OSError as exc:
        raise RunFolderError(f"Cannot create {what} {str(path)!r}: {exc.strerror}.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunFolderError(f"{what.capitalize()} {str(path)!r} is not writable; choose a "
                             "writable folder.")
    return path


class RunLock:
    """An exclusive lock on a run folder, held while a process trains into it.

    ``fcntl.flock`` on ``<run_dir>/.lock``: the kernel drops it when the process dies (even by
    ``kill -9``), so a stale lock never blocks a resume. The holder's pid is written into the
    file so that a refused process can name it.

    Example:
        >>> with RunLock(run_dir):
        ...     train()
    """

    def __init__(self, run_dir: str | Path, option: str = "--run-dir") -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.option = option  # the command-line option a refused user changes
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock at once or raises :class:`RunFolderError` naming the holder."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(
                f"Run folder {str(self.path.parent)!r} is in use by another process (pid "
                f"{holder}); wait for it to finish or choose another {self.option}."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drops the lock (the file stays; an unlocked file means nobody trains there)."""
        if self._fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh, uniquely named folder under ``root``."""
    root = make_dir(root, "output folder")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a unique run folder under {root}.")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep them readable
    return value


class MetricsLog:
    """Appends records to ``metrics.jsonl`` and mirrors scalars to TensorBoard if available.

    Args:
        run_dir: the run folder.
        tensorboard: write TensorBoard events when the package is installed.
        purge_step: a resumed run's step: the TensorBoard events are rebuilt from the records
            kept by :meth:`truncate_after` (events of the interrupted run after that step would
            otherwise appear twice; TensorBoard's own purge depends on event-file order).
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True,
                 purge_step: int | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        self._rebuild_tb = False
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                tb_dir = Path(run_dir) / "tb"
                if purge_step is not None and tb_dir.exists():
                    shutil.rmtree(tb_dir)
                    self._rebuild_tb = True
                self._tb = SummaryWriter(log_dir=str(tb_dir))

    def write(self, record: dict[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._add_scalars(record)

    def _add_scalars(self, record: dict[str, Any]) -> None:
        if self._tb is not None:
            split, step = record.get("split", "train"), record.get("step", 0)
            for k, v in record.items():
                if k not in ("split", "step", "epoch") and isinstance(v, int | float):
                    self._tb.add_scalar(f"{split}/{k}", v, step)

    def truncate_after(self, step: int) -> int:
        """Drops records logged after ``step`` and test records (a resumed run re-creates them);
        returns how many were dropped. TensorBoard events are rebuilt from the kept records when
        the log was opened with ``purge_step``."""
        records = read_metrics(self.path)
        keep = [r for r in records if r.get("step", 0) <= step and r.get("split") != "test"]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        atomic_write_text(self.path, text)
        if self._rebuild_tb:
            for r in keep:
                self._add_scalars(r)
            self._rebuild_tb = False
        return len(records) - len(keep)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file; a torn last line (from a kill) is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
