"""A small name → factory registry shared by models, datasets and recipes (timm's pattern).

Things are registered with a decorator and created by name; ``list`` takes shell-style wildcards
(``list_models("cnn*")``). An unknown name raises a ``KeyError`` that names the close matches and
the available entries, so a typo in a recipe is a one-line fix.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories, with optional metadata per entry.

    Args:
        kind: what the registry holds ("model", "dataset", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"A {self.kind} needs a name to be registered.")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered.")
            self._entries[key] = obj
            self._meta[key] = dict(meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        """Registers ``obj`` under ``name`` without a decorator."""
        self.register(name, **meta)(obj)

    def get(self, name: str) -> T:
        """Returns the entry for ``name``; an unknown name raises ``KeyError`` with suggestions."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self._unknown_message(name)) from None

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata given at registration (description, task, ...)."""
        self.get(name)
        return dict(self._meta[name])

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, filtered by a shell-style ``pattern`` when given."""
        names = sorted(self._entries)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        return (
            f"Unknown {self.kind} {name!r}.{hint} "
            f"Available: {', '.join(sorted(self._entries)) or '(none)'}."
        )
