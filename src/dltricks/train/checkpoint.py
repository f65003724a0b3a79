"""Checkpoints that survive crashes and never unpickle untrusted data.

Layout of one checkpoint (a folder, so that it appears whole or not at all)::

    checkpoints/step_00000120/
        model.safetensors   weights (safetensors: no code execution on load)
        ema.safetensors     EMA weights, when EMA is on
        state.pt            optimizer, scheduler, RNG, loop counters; loaded with weights_only=True
        meta.json           step, epoch, metrics, and the SHA-256 of every file above

Trainable-only checkpoints (``trainable_only=True``, for fine-tunes of a large frozen body such
as LoRA): the weights files hold the parameters that train and all buffers, not the frozen
parameters, which the recipe rebuilds (pretrained weights, seeded initialisation).
``meta.json`` then names the frozen parameters and holds a SHA-256 fingerprint of them (names,
shapes, dtypes and bytes in name order, -0.0 counted as +0.0) per weights file; loading
recomputes the fingerprint on the model it loads into and refuses a model whose frozen weights
differ (:class:`FrozenWeightsError`): the saved adapters mean nothing on top of another body.

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
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn

from dltricks.utils.io import TMP_PREFIX, atomic_write_text, fsync_dir, fsync_file

PREFIX = "step_"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupted."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """An intact checkpoint that does not fit the model built for it (other names or shapes).

    Also a ``ValueError``: the checkpoint is fine, the model (the recipe, the architecture) is
    not the one it needs — bad input, exit code 2 on the command line, as a recipe that no
    longer fits — where a corrupted checkpoint is a failure (exit code 1).
    """


class FrozenWeightsError(CheckpointMismatchError):
    """A trainable-only checkpoint loaded into a model whose frozen weights differ from those it
    was trained against."""


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


def _unique_entries(model: nn.Module) -> dict[str, Tensor]:
    """The model's state by name, parameters as ``nn.Parameter`` (their ``requires_grad``
    readable); a tensor reachable under several names (tied weights) appears under its first
    name only, as it is stored once."""
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            out[name] = t
    return out


def frozen_names(model: nn.Module) -> list[str]:
    """Names of the model's frozen parameters (``requires_grad=False``), sorted; buffers are
    never frozen in this sense (BatchNorm statistics change while training)."""
    return sorted(n for n, t in _unique_entries(model).items()
                  if isinstance(t, nn.Parameter) and not t.requires_grad)


def frozen_fingerprint(model: nn.Module, names: list[str]) -> str:
    """SHA-256 of the tensors ``names`` of ``model``: each one's name, shape, dtype and bytes,
    in sorted name order (the bytes' length follows from shape and dtype: no ambiguity).

    Floating-point zeros are hashed as +0.0: -0.0 is the same weight, and the EMA's averaging
    (``lerp`` of two equal values) turns a pretrained -0.0 into +0.0, so an EMA file's frozen
    weights would otherwise never match a freshly built model.

    Raises:
        KeyError: a name the model does not have.
    """
    state = model.state_dict(keep_vars=True)
    h = hashlib.sha256()
    for name in sorted(names):
        t = state[name].detach().cpu()
        if t.is_floating_point() or t.is_complex():
            t = t + 0.0  # IEEE: -0.0 + 0.0 == +0.0; every other value is unchanged
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        # raw bytes of the values: reshape(-1) first, a 0-dim tensor cannot be viewed as bytes
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _save_trainable(model: nn.Module, frozen: set[str], path: Path) -> None:
    """Writes every tensor of ``model`` but the frozen parameters to a safetensors file."""
    tensors = {n: t.detach().contiguous() for n, t in _unique_entries(model).items()
               if n not in frozen}
    save_file(tensors, str(path))


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
        """Loads weights into ``model`` (strict: every key must match).

        A trainable-only checkpoint fills the tensors it holds and checks that the model's
        frozen parameters are those it was trained against; nothing is changed when it refuses.

        Raises:
            CheckpointMismatchError: the file does not fit the model (names, shapes).
            FrozenWeightsError: a trainable-only checkpoint and a model whose frozen weights
                differ from those it was trained against.
        """
        if "frozen" in self.meta:
            self._load_trainable(model, file)
            return
        try:
            missing, unexpected = load_model(model, self.path / file, strict=False)
        except RuntimeError as exc:  # a tensor of another shape
            first = str(exc).strip().splitlines()[0]
            raise CheckpointMismatchError(
                f"{self.path / file} does not fit the model: {first}") from None
        if missing or unexpected:
            raise CheckpointMismatchError(
                f"{self.path / file} does not fit the model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}."
            )

    def _load_trainable(self, model: nn.Module, file: str) -> None:
        """:meth:`load_model` of a trainable-only checkpoint: checks names, shapes and the
        frozen-weights fingerprint first, then copies the saved tensors."""
        path = self.path / file
        frozen_info = self.meta["frozen"]
        try:
            frozen = set(frozen_info["names"])
            digest = frozen_info["sha256"][file]
        except (KeyError, TypeError):
            raise CheckpointError(f"{self.path / 'meta.json'} has no frozen-weights "
                                  f"fingerprint for {file}.") from None
        tensors = load_file(path)
        own = _unique_entries(model)
        # strict on the saved subset: every non-frozen tensor of the model is in the file, the
        # file holds nothing else, and the frozen names exist in the model
        expected = set(own) - frozen
        missing = sorted((expected - set(tensors)) | (frozen - set(own)))
        unexpected = sorted(set(tensors) - expected)
        if missing or unexpected:
            raise CheckpointMismatchError(f"{path} does not fit the model: missing "
                                          f"{missing[:5]}, unexpected {unexpected[:5]}.")
        wrong = [n for n, t in tensors.items() if t.shape != own[n].shape]
        if wrong:
            n = wrong[0]
            raise CheckpointMismatchError(f"{path} does not fit the model: {n} has shape "
                                          f"{tuple(tensors[n].shape)} in the file and "
                                          f"{tuple(own[n].shape)} in the model.")
        if frozen_fingerprint(model, sorted(frozen)) != digest:
            raise FrozenWeightsError(
                f"{path}: the frozen weights of this model differ from those the checkpoint "
                "was trained against (train.checkpoint.trainable_only saved only the trained "
                "weights), so rebuild the model exactly as the run did: the same recipe, seed "
                "and pretrained weights."
            )
        # keys and shapes were checked above; strict=False only because the frozen parameters
        # (and tied aliases) are absent from the file by design
        model.load_state_dict(tensors, strict=False)

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
    trainable_only: bool = False,
) -> Path:
    """Writes one checkpoint atomically and returns its folder.

    Args:
        directory: the run's ``checkpoints`` folder.
        step: optimizer step; names the folder.
        model: weights to save (unwrap DDP first).
        state: tensors and plain Python values only (must load with ``weights_only=True``).
        meta: JSON-serialisable facts (epoch, metrics, reason).
        ema: optional EMA model (the same architecture as ``model``).
        trainable_only: leave out the parameters of ``model`` with ``requires_grad=False``
            (in the EMA file too) and record their names and fingerprints in ``meta.json``;
            loading needs a model that rebuilds exactly those frozen weights.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    # a unique temporary folder: two writers never share one (the run lock prevents that
    # anyway); leftovers of killed writes are removed by :func:`prune`
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f"{TMP_PREFIX}{final.name}."))
    weights = {"model.safetensors": model}
    if ema is not None:
        weights["ema.safetensors"] = ema
    info = dict(meta or {})
    if trainable_only:
        frozen = frozen_names(model)
        for file, module in weights.items():
            _save_trainable(module, set(frozen), tmp / file)
        info["frozen"] = {"names": frozen,
                          "sha256": {file: frozen_fingerprint(module, frozen)
                                     for file, module in weights.items()}}
    else:
        for file, module in weights.items():
            save_model(module, str(tmp / file))
    torch.save(state, tmp / "state.pt")
    files = sorted(p.name for p in tmp.iterdir())
    for name in files:
        _fsync_file(tmp / name)
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
    "CheckpointMismatchError",
    "FrozenWeightsError",
    "atomic_write_text",
    "checkpoint_name",
    "frozen_fingerprint",
    "frozen_names",
    "latest_valid",
    "list_checkpoints",
    "load_latest",
    "prune",
    "save_checkpoint",
    "verify",
]
