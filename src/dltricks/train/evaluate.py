"""Evaluation of a model on a split: no optimizer, no Trainer, no run folder.

:func:`evaluate` is what the training loop calls every epoch and what ``dltricks eval`` calls on
a finished run (:func:`evaluate_run` loads its recipe, data and checkpoint weights). Metrics are
accumulated as sums (see :mod:`dltricks.train.objectives`), so under DDP each process scores a
shard and one all-reduce gives the metrics of the whole split.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dltricks.data import ArrayDataset
from dltricks.train import checkpoint as ckpt
from dltricks.train.distributed import DistInfo, all_reduce_sum
from dltricks.train.metrics import MetricAccumulator
from dltricks.train.objectives import Objective
from dltricks.train.terms import as_model_output
from dltricks.utils.mode import eval_mode


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: ArrayDataset,
    objective: Objective,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    dist: DistInfo | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on one split, in eval mode (the previous mode is restored).

    Args:
        model: the model (unwrapped).
        split: the samples, e.g. ``data.test``.
        objective: the task's objective (loss and metrics).
        batch_size: samples per forward.
        device: where to run (default: where the model's parameters are).
        autocast: factory of an autocast context (the run's precision).
        dist: under DDP, this process scores every ``world_size``-th sample and the sums are
            all-reduced; None for one process.

    Returns:
        The objective's metrics (``loss``, ``accuracy``, ...); an empty split gives ``{}``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    meter = MetricAccumulator()
    # eval_mode restores each submodule's own flag: a frozen BatchNorm kept in eval mode while
    # fine-tuning stays frozen after a validation pass (model.train(True) would unfreeze it)
    with eval_mode(model):
        shard = torch.arange(len(split))[rank::world]
        for idx in shard.split(batch_size):
            x, y = split.x[idx].to(device), split.y[idx].to(device)
            with autocast():
                logits = as_model_output(model(x)).logits
            _, stats = objective(logits.float(), y)
            meter.update_dict(stats)
        if dist is not None and dist.enabled:
            meter.from_vector(all_reduce_sum(meter.as_vector(), dist))
    return meter.compute()


def checkpoint_weights_file(run_dir: Path, which: str = "best") -> tuple[ckpt.Checkpoint, str]:
    """The checkpoint to evaluate (``best`` or ``last``) and which weights file in it.

    ``best`` is the checkpoint of the best validation value recorded in the newest loadable
    checkpoint's state (an epoch that improves the monitored metric is always checkpointed,
    whatever ``train.checkpoint.every_epochs``); the EMA weights are used where the run kept
    them. :meth:`~dltricks.train.checkpoint.Checkpoint.load_model` of the result checks a
    trainable-only checkpoint's frozen weights against the model it loads into.
    """
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ValueError(f"Unknown checkpoint {which!r}; use 'best' or 'last'.")
    got = ckpt.load_latest(run_dir / "checkpoints", lambda c: c.load_state())
    if got is None:
        raise ckpt.CheckpointError(f"No valid checkpoint in {run_dir / 'checkpoints'}.")
    found, state = got
    if which == "best":
        best_step = state["loop"]["best_step"]
        if best_step is not None and best_step != found.step:
            found = ckpt.verify(run_dir / "checkpoints" / ckpt.checkpoint_name(best_step))
    file = "ema.safetensors" if (found.path / "ema.safetensors").exists() else "model.safetensors"
    return found, file


def evaluate_run(run_dir: str | Path, split: str = "test", which: str = "best",
                 device: str | None = None) -> tuple[dict[str, float], str]:
    """Metrics of a run's best (or last) checkpoint on a split, and which weights were used.

    Builds only the data and the model from the run's ``recipe.yaml``.

    Returns:
        (metrics, ``"<checkpoint folder>/<weights file>"``).

    Raises:
        FrozenWeightsError: the run saved trainable-only checkpoints and the model rebuilt from
            its recipe has other frozen weights (a ``ValueError``: exit code 2 in the CLI).
    """
    from dltricks.train.components import autocast_factory, build_data, build_model_with_terms
    from dltricks.train.components import resolve_device as _device
    from dltricks.train.objectives import make_objective
    from dltricks.train.recipe import RecipeError, load_recipe

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecipeError(f"Run folder {str(run_dir)!r} does not exist.")
    if not (run_dir / "recipe.yaml").is_file():
        raise RecipeError(f"{str(run_dir)!r} is not a run folder (it has no recipe.yaml).")
    recipe = load_recipe(run_dir / "recipe.yaml")
    if split not in ("train", "val", "test"):
        raise ValueError(f"Unknown split {split!r}; use train, val or test.")
    dev = _device(device or recipe.device)
    found, file = checkpoint_weights_file(run_dir, which)
    data = build_data(recipe)
    tc = recipe.train
    objective = make_objective(data.task, tc.label_smoothing, tc.dice_weight)
    from dltricks.train.terms import build_terms

    # terms may wrap the model (adapters): their setups run, no optimizer is built
    model, _ = build_model_with_terms(recipe, data, dev, build_terms(recipe.objectives),
                                      objective=objective)
    found.load_model(model, file)
    precision = tc.precision if not (tc.precision == "fp16" and dev.type != "cuda") else "fp32"
    metrics = evaluate(model, data.split(split), objective,
                       batch_size=recipe.data.eval_batch_size or recipe.data.batch_size,
                       device=dev, autocast=autocast_factory(precision, dev))
    return metrics, f"{found.path.name}/{file}"


__all__ = ["checkpoint_weights_file", "evaluate", "evaluate_run"]
