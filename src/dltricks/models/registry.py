"""Model registry: ``register_model``, ``register_variant``, ``create_model(name, **kw)``,
``list_models(pattern)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from dltricks.registry import Registry

MODELS: Registry = Registry("model")


def register_model(name: str | None = None, **meta: Any):
    """Decorator registering a model factory (a class or a function returning an ``nn.Module``)."""
    return MODELS.register(name, **meta)


def register_variant(name: str, cls: type[nn.Module], doc: str,
                     defaults: Mapping[str, Any] | None = None,
                     fixed: Mapping[str, Any] | None = None,
                     resolve: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
                     | None = None, **meta: Any) -> Callable[..., nn.Module]:
    """Registers ``name``: the class ``cls`` with other default arguments (timm's pattern of a
    base model plus per-variant defaults).

    The factory's signature is the class's own with ``defaults`` substituted and the ``fixed``
    arguments removed, so :func:`create_model` checks keyword arguments by name and lists them
    in its errors, and a new option of the class reaches every variant; arguments are
    forwarded by name, never by position.

    Args:
        name: registry name.
        cls: the model class.
        doc: the factory's docstring.
        defaults: the variant's defaults, by argument name (a caller may override them).
        fixed: arguments the variant always passes and a caller cannot set (e.g. the
            recurrent cell of ``gru_tagger``).
        resolve: ``resolve(given, arguments) -> arguments`` adjusts the full argument dict
            from what the caller gave (e.g. an explicit layout that replaces a default one).
        **meta: registry metadata (``task``, ``description``, ``example``).

    Raises:
        ValueError: ``defaults`` or ``fixed`` name an argument ``cls`` does not have.
    """
    defaults, fixed = dict(defaults or {}), dict(fixed or {})
    sig = inspect.signature(cls)
    unknown = sorted((set(defaults) | set(fixed)) - set(sig.parameters))
    if unknown:
        raise ValueError(f"Variant {name!r}: {cls.__name__} has no arguments {unknown}.")
    sig = sig.replace(
        parameters=[p.replace(default=defaults[p.name]) if p.name in defaults else p
                    for p in sig.parameters.values() if p.name not in fixed],
        return_annotation=cls.__name__)

    def factory(*args: Any, **kwargs: Any) -> nn.Module:
        bound = sig.bind(*args, **kwargs)
        given = dict(bound.arguments)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if resolve is not None:
            arguments = resolve(given, arguments)
        return cls(**arguments, **fixed)

    factory.__signature__ = sig  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return register_model(name, **meta)(factory)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of registered models, optionally filtered by a wildcard pattern."""
    return MODELS.names(pattern)


def model_signature(name: str) -> inspect.Signature:
    """Signature of a registered model factory (used to validate recipe kwargs)."""
    return inspect.signature(MODELS.get(name))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Creates a registered model by name.

    Raises:
        KeyError: unknown model name (the message lists the available ones).
        ValueError: a keyword argument the model does not accept (the message lists those it does).
    """
    factory = MODELS.get(name)
    sig = inspect.signature(factory)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_any:
        unknown = sorted(set(kwargs) - set(sig.parameters))
        if unknown:
            raise ValueError(
                f"Model {name!r} does not accept {', '.join(map(repr, unknown))}; "
                f"it accepts: {', '.join(sig.parameters)}."
            )
    return factory(**kwargs)
