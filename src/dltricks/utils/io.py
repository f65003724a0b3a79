"""Atomic file writes: a file appears whole or not at all.

Every writer goes through a uniquely named temporary file in the target's folder (so two
writers of the same path never share a temporary file), flushes and fsyncs it, renames it over
the target with :func:`os.replace` (atomic on POSIX and Windows) and, where the platform allows,
fsyncs the folder so that the rename itself survives a power cut. A failed write removes its
temporary file and leaves the previous content in place.

:func:`scratch_writes` turns the fsyncs off (never the atomic rename) for work that is thrown
away when interrupted, e.g. a lab unit, which restarts from an empty folder: on small runs the
fsyncs of per-epoch checkpoints were a third of a unit's time.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
"""Prefix of temporary files and folders; anything starting with it is an unfinished write."""

_DURABLE = True  # fsync files and folders (off only inside scratch_writes)


@contextlib.contextmanager
def scratch_writes() -> Iterator[None]:
    """Inside: writes stay atomic (temporary file + rename) but are not fsynced.

    For output that is recreated from scratch after a crash; a power cut may lose it, a kill
    never tears a file. Restores the previous setting on exit (nests).
    """
    global _DURABLE
    before, _DURABLE = _DURABLE, False
    try:
        yield
    finally:
        _DURABLE = before


def fsync_file(fd: int) -> None:
    """``os.fsync(fd)``, skipped inside :func:`scratch_writes`."""
    if _DURABLE:
        os.fsync(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flushes a folder's entry table to disk (a no-op where folders cannot be opened, and
    inside :func:`scratch_writes`)."""
    if not _DURABLE:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` through a unique temporary file, fsync and rename.

    Args:
        path: the target file; its folder must exist.
        data: the complete new content.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"atomic_write_bytes needs bytes, got {type(data).__name__}.")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            fsync_file(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Writes ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    if not isinstance(text, str):
        raise ValueError(f"atomic_write_text needs a str, got {type(text).__name__}.")
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1,
                      default: Any = str) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically.

    Args:
        path: the target file.
        obj: a JSON-serialisable value; ``default`` converts anything else (``str`` by
            default, so paths and dates are written as text).
        indent: JSON indentation, None for one line.
        default: passed to :func:`json.dumps`.
    """
    atomic_write_text(path, json.dumps(obj, indent=indent, default=default))


def read_mapping_file(path: str | os.PathLike[str], what: str,
                      error: type[Exception] = ValueError,
                      missing: type[Exception] | None = None) -> dict[str, Any]:
    """Reads a JSON (``.json``) or YAML file that must hold a mapping, with one-sentence errors.

    Args:
        path: the file.
        what: how messages name it ("Recipe file", "Search space").
        error: exception raised for a file that does not parse or holds no mapping.
        missing: exception raised for a missing file (default: ``error``).

    Returns:
        The parsed mapping (never validated against a schema: the caller does that).
    """
    path = Path(path)
    if not path.is_file():
        raise (missing or error)(f"{what} {str(path)!r} does not exist.")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{what} {str(path)!r} is not valid JSON: {exc}") from None
    else:
        import yaml  # a dependency of the package; imported where it is needed

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise error(f"{what} {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {str(path)!r} must hold a mapping at the top level.")
    return data


__all__ = ["TMP_PREFIX", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "fsync_dir", "fsync_file", "read_mapping_file", "scratch_writes"]
