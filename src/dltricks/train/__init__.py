"""Training: recipes, the engine, optimizers, schedules, losses, metrics and checkpoints.

The names below are imported lazily, so that ``import dltricks.train.losses`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recipe": "recipe",
    "RecipeError": "recipe",
    "list_builtin_recipes": "recipe",
    "load_builtin_recipe": "recipe",
    "load_recipe": "recipe",
    "resolve_recipe": "recipe",
    "NonFiniteError": "trainer",
    "Trainer": "trainer",
    "TrainingInterrupted": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dltricks.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dltricks.train' has no attribute {name!r}")
