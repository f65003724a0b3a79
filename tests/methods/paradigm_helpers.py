"""Helpers and fixtures of the paradigm tests (imported by the test modules): tiny recipes and
run folders made once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dltricks.data import create_dataset
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.trainer import Trainer

QUIET = Console(stderr=True, quiet=True)


def recipe(model: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
           objectives: list[dict[str, Any]] | None = None, **train: Any) -> dict[str, Any]:
    """A tiny CPU recipe dict (MLP on digits unless given)."""
    out: dict[str, Any] = {
        "name": "t", "device": "cpu", "seed": 0,
        "model": model or {"name": "mlp", "kwargs": {"hidden": [16]}},
        "data": {"name": "digits", "batch_size": 32, **(data or {})},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "train": {"steps": 6, "epochs": None, "log_every_steps": 2, **train},
    }
    if objectives:
        out["objectives"] = objectives
    return out


def fit(d: dict[str, Any], run_dir: Path, **kw: Any) -> tuple[Trainer, dict[str, Any]]:
    trainer = Trainer(recipe_from_dict(d), run_dir=run_dir, tensorboard=False, console=QUIET,
                      **kw)
    return trainer, trainer.fit()


@pytest.fixture(scope="session")
def digits():
    return create_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of a wider MLP on digits (the teacher / pretrained model), in pytest's
    temporary folder (cleaned up by pytest, never left in /tmp)."""
    root = tmp_path_factory.mktemp("teacher")
    fit(recipe(model={"name": "mlp", "kwargs": {"hidden": [64]}}, steps=30), root / "teacher")
    return root / "teacher"
