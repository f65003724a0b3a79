"""Atomic file writes: a file appears whole or not at all.

Every writer goes through a uniquely named temporary file in the target's folder (so two
writers of the same path never share a temporary file), flushes and fsyncs it, renames it over
the target with :func:`os.replace` (atomic on POSIX and Windows) and, where the platform allows,
fsyncs the folder so that the rename itself survives a power cut. A failed write removes its
temporary file and leaves the previous content in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
"""Prefix of temporary files and folders; anything starting with it is an unfinished write."""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flushes a folder's entry table to disk (a no-op where folders cannot be opened)."""
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
            os.fsync(f.fileno())
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


__all__ = ["TMP_PREFIX", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "fsync_dir"]
