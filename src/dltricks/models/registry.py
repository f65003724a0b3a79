"""Model registry: ``register_model``, ``create_model(name, **kw)``, ``list_models(pattern)``."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from dltricks.registry import Registry

MODELS: Registry = Registry("model")


def register_model(name: str | None = None, **meta: Any):
    """Decorator registering a model factory (a class or a function returning an ``nn.Module``)."""
    return MODELS.register(name, **meta)


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
