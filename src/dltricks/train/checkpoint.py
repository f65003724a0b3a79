"""Checkpoints that survive crashes and never unpickle untrusted data.

Layout of one checkpoint (a folder, so that it appears whole or not at all)::

    checkpoints/step_00000120/
        model.safetensors   weights (safetensors: no code execution on load)
        ema.safetensors     EMA weights, when EMA is on
        state.pt            optimizer, scheduler, RNG, loop counters; loaded with weights_only=True
        meta.json           step, epoch, metrics, and the SHA-256 of every file above

Writing: everything goes into a hidden temporary folder, each file is fsync'ed, then the folder
is renamed into place (an atomic rename on POSIX) and the parent directory is fsync'ed. A kill
at any moment leaves either the previous checkpoints or the new one, never half of one.

Temporary files and folders have unique names (:mod:`dltricks.utils.io`), so concurrent
writers never collide on one; a run folder is also locked for its run's lifetime
(:class:`dltricks.train.run.RunLock`).

Reading: :func:`latest_valid` walks checkpoints from the newest, verifies each file's hash, and
falls back to the previous good checkpoint with a warning naming what was wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from dltricks.utils.io import TMP_PREFIX, atomic_write_text, fsync_dir, fsync_file

PREFIX = "step_"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupted."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        fsync_file(f.fileno())


_fsync_dir = fsync_dir


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


@dataclass
class Checkpoint:
    """A verified checkpoint on disk."""

    path: Path
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    def load_model(self, model: nn.Module, file: str = "model.safetensors") -> None:
        """Loads weights into ``model`` (strict: every key must match)."""
        try:
            missing, unexpected = load_model(model, self.path / file, strict=False)
        except RuntimeError as exc:  # a tensor of another shape
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{self.path / file} does not fit the model: {first}") from None
        if missing or unexpected:
            raise CheckpointError(
                f"{self.path / file} does not fit the model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}."
            )

    def load_state(self) -> dict[str, Any]:
        """The training state (optimizer, scheduler, RNG, counters), without unpickling code.

        Raises:
            CheckpointError: ``state.pt`` is not a weights-only loadable file (tampered with,
                or written by something else), naming the file.
        """
        try:
            return torch.load(self.path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ...
            raise CheckpointError(
                f"{self.path / 'state.pt'} cannot be loaded safely: it is not a plain file of "
                f"tensors and values ({type(exc).__name__}); it was altered or not written by "
                "dltricks."
            ) from None


def save_checkpoint(
    directory: Path,
    step: int,
    model: nn.Module,
    state: dict[str, Any],
    meta: dict[str, Any] | None = None,
    ema: nn.Module | None = None,
) -> Path:
    """Writes one checkpoint atomically and returns its folder.

    Args:
        directory: the run's ``checkpoints`` folder.
        step: optimizer step; names the folder.
        model: weights to save (unwrap DDP first).
        state: tensors and plain Python values only (must load with ``weights_only=True``).
        meta: JSON-serialisable facts (epoch, metrics, reason).
        ema: optional EMA model.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    # a unique temporary folder: two writers never share one (the run lock prevents that
    # anyway); leftovers of killed writes are removed by :func:`prune`
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f"{TMP_PREFIX}{final.name}."))
    save_model(model, str(tmp / "model.safetensors"))
    if ema is not None:
        save_model(ema, str(tmp / "ema.safetensors"))
    torch.save(state, tmp / "state.pt")
    files = sorted(p.name for p in tmp.iterdir())
    for name in files:
        _fsync_file(tmp / name)
    info = dict(meta or {})
    info.update(step=step, time=time.time(), files={n: _sha256(tmp / n) for n in files})
    with open(tmp / "meta.json", "w") as f:
        json.dump(info, f, indent=1)
        f.flush()
        fsync_file(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # a checkpoint at this step already exists (e.g. signal after epoch end)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(directory)
    return final


def verify(path: Path) -> Checkpoint:
    """Checks a checkpoint folder against the hashes in its meta.json.

    Raises:
        CheckpointError: naming the file that is missing, truncated or altered.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        files = meta["files"]
        int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{meta_path} is missing or unreadable ({exc}).") from None
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f} is missing.")
        if _sha256(f) != digest:
            raise CheckpointError(f"{f} is truncated or corrupted (SHA-256 mismatch).")
    return Checkpoint(path, meta)


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint folders, oldest first (temporary folders excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def latest_valid(directory: Path, warn: bool = True) -> Checkpoint | None:
    """The newest checkpoint that verifies; corrupted newer ones are skipped with a warning."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return verify(path)
        except CheckpointError as exc:
            if warn:
                warnings.warn(f"Skipping bad checkpoint: {exc}", stacklevel=2)
    return None


def load_latest(directory: Path, load: Callable[[Checkpoint], Any], warn: bool = True
                ) -> tuple[Checkpoint, Any] | None:
    """The newest checkpoint that verifies *and* that ``load`` accepts, with what it returned.

    A checkpoint whose files hash correctly can still fail to load (a ``state.pt`` replaced
    together with its hash in ``meta.json``); ``load`` raising :class:`CheckpointError` makes
    this fall back to the previous one with a warning, as for a corrupted file.
    """
    for path in reversed(list_checkpoints(directory)):
        try:
            found = verify(path)
            return found, load(found)
        except CheckpointError as exc:
            if warn:
                warnings.warn(f"Skipping bad checkpoint: {exc}", stacklevel=2)
    return None


def prune(directory: Path, keep_last: int, protect: set[int] | None = None) -> list[Path]:
    """Deletes all but the ``keep_last`` newest checkpoints and those whose step is protected
    (the best one). Leftover temporary folders of interrupted writes go too."""
    protect = protect or set()
    removed = []
    ckpts = list_checkpoints(directory)
    for path in ckpts[: max(0, len(ckpts) - keep_last)]:
        if int(path.name[len(PREFIX):]) not in protect:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    for tmp in Path(directory).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return removed


__all__ = [
    "PREFIX",
    "TMP_PREFIX",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_text",
    "checkpoint_name",
    "latest_valid",
    "list_checkpoints",
    "load_latest",
    "prune",
    "save_checkpoint",
    "verify",
]
