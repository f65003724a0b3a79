"""Training: recipes, the engine, optimizers, schedules, losses, metrics and checkpoints.

The engine is in parts: :mod:`.components` (build everything from a recipe), :mod:`.state`
(what a checkpoint holds), :mod:`.evaluate` (score a model, no optimizer), :mod:`.trainer`
(the run folder and the loop) and :mod:`.terms` (loss terms that paradigms add to the loop).

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
    "Callback": "trainer",
    "NonFiniteError": "trainer",
    "Trainer": "trainer",
    "TrainingInterrupted": "trainer",
    "build_components": "components",
    "TrainState": "state",
    "evaluate_run": "evaluate",
    "LossTerm": "terms",
    "StepContext": "terms",
    "TermContext": "terms",
    "register_term": "terms",
    "RunFolderError": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dltricks.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dltricks.train' has no attribute {name!r}")
