"""Checking keyword arguments from a recipe against the signature of what they are passed to.

A recipe hands ``kwargs`` to a model factory, a dataset builder or a loss term. A typo or a
value of the wrong type should be refused before anything is built, with a sentence that names
the key, what was given and what is allowed, instead of a ``TypeError`` traceback from deep
inside a constructor. The annotations of the callee are the schema: each annotated parameter is
validated by pydantic (lax mode, so ``"3"`` for an ``int`` is accepted as YAML would give it
but ``"bad"`` is not); unannotated parameters, or annotations pydantic cannot check, accept
anything.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

_NOT_CHECKED = object()


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: check names only
        return {}


def _adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # pydantic cannot build a validator for it: do not check the type
        return None


def check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], where: str,
                 skip: tuple[str, ...] = ()) -> None:
    """Refuses keyword arguments that ``fn`` would not accept, with one sentence.

    Args:
        fn: a function or class (its ``__init__`` is checked).
        kwargs: the keyword arguments a recipe gives.
        where: how the message names the place, e.g. ``"data.kwargs of dataset 'digits'"``.
        skip: parameters supplied by the caller, not by the recipe (``seed``).

    Raises:
        ValueError: an unknown key (naming the allowed ones) or a value of the wrong type
            (naming the key, the value and the expected type).
    """
    sig = inspect.signature(fn)
    params = {n: p for n, p in sig.parameters.items()
              if n not in ("self", *skip) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not accepts_any:
        raise ValueError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; allowed: {', '.join(params) or '(none)'}."
        )
    hints = _hints(fn)
    for key, value in kwargs.items():
        if key not in params or key not in hints:
            continue
        adapter = _adapter(hints[key])
        if adapter is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as err:
            first = err.errors()[0]["msg"] if err.errors() else str(err)
            raise ValueError(
                f"{where}: {key}={value!r} is not valid ({first}); expected "
                f"{_type_name(hints[key])}."
            ) from None


def _type_name(annotation: Any) -> str:
    name = getattr(annotation, "__name__", None)
    if name and not getattr(annotation, "__args__", None):
        return name
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")


def missing_required(fn: Callable[..., Any], kwargs: dict[str, Any],
                     skip: tuple[str, ...] = ()) -> list[str]:
    """Required keyword parameters of ``fn`` absent from ``kwargs``."""
    sig = inspect.signature(fn)
    return [n for n, p in sig.parameters.items()
            if n not in ("self", *skip) and p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in kwargs]


__all__ = ["check_kwargs", "missing_required"]
