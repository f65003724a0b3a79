"""The parts of a training run, built by one function from a recipe.

After torchtune's recipe interface: :func:`build_components` turns a validated recipe into the
data, the model (and its DDP wrapper), the objective, the loss terms with their data streams,
the EMA copy, the augmentation, the optimizer, the LR schedule and the grad scaler — and
nothing else: it writes no file, does not seed the global RNG (the model is initialised under
a forked RNG seeded by the recipe), and holds no loop state. The
:class:`~dltricks.train.trainer.Trainer` runs the loop over them; :func:`build_data` and
:func:`build_model` also serve ``dltricks eval``, which needs no optimizer.

Every recipe value that reaches a constructor is checked first (``data.kwargs`` against the
dataset builder, ``model.kwargs`` against the model factory, objectives' kwargs against the
term), so a typo or a wrongly typed value is one sentence, not a traceback.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dltricks.data import DATASETS, DatasetSplits, create_dataset
from dltricks.models import create_model
from dltricks.models.registry import MODELS, model_signature
from dltricks.train.distributed import DistInfo
from dltricks.train.kwargs import check_kwargs
from dltricks.train.objectives import Objective, make_objective
from dltricks.train.optim import build_optimizer
from dltricks.train.recipe import Recipe
from dltricks.train.schedules import build_scheduler
from dltricks.train.terms import BoundTerm, Stream, TermContext, build_terms

LOWER_IS_BETTER = ("loss", "nll", "ece")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("Recipe asks for device 'cuda' but no CUDA device is available.")
    return torch.device(name)


def autocast_factory(precision: str, device: torch.device) -> Callable[[], Any]:
    """A zero-argument factory of the autocast context for ``train.precision``."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def model_kwargs_for(name: str, data: DatasetSplits, given: dict[str, Any]) -> dict[str, Any]:
    """Fills the constructor arguments a model can take from the data (channels, classes, ...);
    the recipe's own kwargs win."""
    params = model_signature(name).parameters
    auto = {
        "in_channels": data.in_channels,
        "num_classes": data.num_classes,
        "spatial_dims": data.spatial_dims,
        "in_features": math.prod(data.input_shape),
        "vocab_size": data.vocab_size,
    }
    out = {k: v for k, v in auto.items() if k in params and v is not None and k not in given}
    if "spatial_dims" in out and data.spatial_dims == 0:
        out.pop("spatial_dims")
    return {**out, **given}


def build_data(recipe: Recipe) -> DatasetSplits:
    """The recipe's dataset, after checking ``data.kwargs`` against the dataset's builder."""
    name = recipe.data.name
    builder = DATASETS.get(name)  # unknown name: KeyError listing the datasets
    check_kwargs(builder, recipe.data.kwargs, f"data.kwargs of dataset {name!r}", skip=("seed",))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)  # builders that draw from the global RNG stay seeded
        return create_dataset(name, seed=recipe.seed, **recipe.data.kwargs)


def build_model(recipe: Recipe, data: DatasetSplits, device: torch.device | str = "cpu"
                ) -> nn.Module:
    """A fresh model of the recipe, sized from the data, on ``device`` (initialised from the
    global RNG; see :func:`build_components` for the seeded build)."""
    name = recipe.model.name
    factory = MODELS.get(name)
    check_kwargs(factory, recipe.model.kwargs, f"model.kwargs of model {name!r}")
    kwargs = model_kwargs_for(name, data, recipe.model.kwargs)
    try:
        model = create_model(name, **kwargs)
    except TypeError as exc:  # a value of the right type the constructor still cannot use
        raise ValueError(f"model {name!r} could not be built from model.kwargs "
                         f"{recipe.model.kwargs}: {exc}.") from None
    return model.to(device)


def monitor_spec(recipe: Recipe, objective: Objective) -> tuple[str, str]:
    """(metric name, 'min' | 'max') watched on the validation split."""
    name = recipe.train.monitor or objective.default_monitor
    name = name.removeprefix("val/")
    return name, ("min" if name in LOWER_IS_BETTER else "max")


def check_data_fits(recipe: Recipe, data: DatasetSplits, world_size: int = 1) -> None:
    """Refuses data the loop cannot run on, naming the recipe key to change."""
    bs = recipe.data.batch_size
    if bs % world_size:
        raise ValueError(f"data.batch_size {bs} must be divisible by the number of processes "
                         f"({world_size}).")
    sizes = data.sizes()
    if sizes["train"] < bs:
        raise ValueError(f"data.batch_size {bs} exceeds the {sizes['train']} training samples "
                         f"of {data.name!r}; lower data.batch_size or give more samples.")
    for split in ("val", "test"):
        if sizes[split] < world_size:
            raise ValueError(
                f"The {split} split of {data.name!r} has {sizes[split]} samples "
                f"(splits: train {sizes['train']}, val {sizes['val']}, test {sizes['test']}); "
                f"the run needs a {split} split to choose the best checkpoint and report "
                f"results: give the {split} split a larger fraction (data.kwargs, e.g. "
                f"fractions or val/test sizes) or more samples."
            )


@dataclass
class Components:
    """Everything a run trains with, built by :func:`build_components`.

    Attributes:
        data: the dataset splits.
        model: the model, unwrapped (after the terms' setups, which may replace it).
        ddp_model: the module called for training forwards (DDP wrapper under torchrun).
        objective: the task's loss and metrics.
        terms: the recipe's extra loss terms, built and set up.
        streams: data streams the terms registered.
        ema: EMA copy of the model, or None.
        augment: batch augmentation, or None.
        optimizer, scheduler, scaler: optimisation (scaler enabled for fp16 only).
        params: every trainable parameter the optimizer updates (model and terms).
        term_params: the terms' own trainable parameters (all-reduced by the engine under DDP).
        micro_per_epoch: micro-batches per epoch; steps_per_epoch: optimizer steps per epoch.
        total_steps: optimizer steps of the whole run.
        monitor, monitor_mode: the validation metric for the best checkpoint and its direction.
        autocast: factory of the run's autocast context.
    """

    data: DatasetSplits
    model: nn.Module
    ddp_model: nn.Module
    objective: Objective
    terms: list[BoundTerm]
    streams: dict[str, Stream]
    ema: AveragedModel | None
    augment: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    params: list[nn.Parameter]
    term_params: list[nn.Parameter]
    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    monitor: str
    monitor_mode: str
    autocast: Callable[[], Any] = contextlib.nullcontext
    extra: dict[str, Any] = field(default_factory=dict)


def build_model_with_terms(
    recipe: Recipe,
    data: DatasetSplits,
    device: torch.device,
    terms: list[BoundTerm],
    dist: DistInfo | None = None,
    run_dir: Path | None = None,
    objective: Objective | None = None,
    total_steps: int = 1,
    steps_per_epoch: int = 1,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> tuple[nn.Module, dict[str, Stream]]:
    """The recipe's model, initialised under an RNG seeded with ``recipe.seed`` (the caller's
    RNG is left as it was), after every term's :meth:`~dltricks.train.terms.LossTerm.setup`
    (which may freeze or replace it); also the data streams the terms registered."""
    if objective is None:
        tc = recipe.train
        objective = make_objective(data.task, tc.label_smoothing, tc.dice_weight)
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(recipe.seed)
        model = build_model(recipe, data, device)
        ctx = TermContext(
            recipe=recipe, data=data, model=model, objective=objective, device=device,
            seed=recipe.seed, run_dir=run_dir, total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            rank=dist.rank if dist is not None else 0,
            world_size=dist.world_size if dist is not None else 1,
            build_model=lambda: build_model(recipe, data, device), autocast=autocast,
        )
        for bound in terms:
            bound.term.setup(ctx)
    return ctx.model.to(device), ctx.streams


def _build_augment(recipe: Recipe, data: DatasetSplits):
    cfg = recipe.data.augment
    if not cfg.enabled:
        return None
    from dltricks.data.augment import build_augment

    return build_augment(cfg, data.spatial_dims, data.task, num_classes=data.num_classes)


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def build_components(
    recipe: Recipe,
    device: torch.device,
    dist: DistInfo,
    data: DatasetSplits | None = None,
    run_dir: Path | None = None,
) -> Components:
    """Builds every part of a run from the recipe (see the module docstring).

    The model, the EMA copy and the terms' modules are initialised under an RNG forked from
    the caller's and seeded with ``recipe.seed``, so the same recipe always starts from the same
    weights and the global RNG is left as it was.

    Raises:
        ValueError: a recipe value that does not fit (the message names the key).
    """
    tc = recipe.train
    if tc.precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision 'fp16' needs a CUDA device (fp16 with a grad scaler); "
                         "on CPU use 'bf16'.")
    data = data if data is not None else build_data(recipe)
    check_data_fits(recipe, data, dist.world_size)
    micro_per_epoch = len(data.train) // recipe.data.batch_size
    steps_per_epoch = micro_per_epoch // tc.grad_accum
    if steps_per_epoch == 0:
        raise ValueError(f"train.grad_accum {tc.grad_accum} leaves no optimizer step in an epoch "
                         f"of {micro_per_epoch} batches.")
    total_steps = tc.steps or tc.epochs * steps_per_epoch  # type: ignore[operator]
    objective = make_objective(data.task, tc.label_smoothing, tc.dice_weight)
    monitor, mode = monitor_spec(recipe, objective)
    known = objective.metric_names
    if monitor not in known and not monitor.startswith("dice_class"):
        raise ValueError(f"train.monitor {monitor!r} is not a validation metric of a "
                         f"{data.task} run; available: {', '.join(known)}.")
    autocast = autocast_factory(tc.precision, device)
    terms = build_terms(recipe.objectives)

    model, streams = build_model_with_terms(recipe, data, device, terms, dist, run_dir,
                                            objective, total_steps, steps_per_epoch, autocast)
    ddp_model: nn.Module = model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        ddp_model = DistributedDataParallel(model, device_ids=ids)
    ema = None
    if tc.ema.enabled:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema.decay),
                            use_buffers=True)
    optimizer = build_optimizer(model, recipe.optimizer)
    term_params: list[nn.Parameter] = []
    for bound in terms:
        for group in bound.term.param_groups():
            optimizer.add_param_group(dict(group))
            term_params.extend(group["params"])
    params = [p for g in optimizer.param_groups for p in g["params"]]
    scheduler = build_scheduler(optimizer, recipe.schedule, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=tc.precision == "fp16")
    return Components(
        data=data, model=model, ddp_model=ddp_model, objective=objective, terms=terms,
        streams=streams, ema=ema, augment=_build_augment(recipe, data), optimizer=optimizer,
        scheduler=scheduler, scaler=scaler, params=params, term_params=term_params,
        micro_per_epoch=micro_per_epoch, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, monitor=monitor, monitor_mode=mode, autocast=autocast,
    )


__all__ = [
    "LOWER_IS_BETTER",
    "Components",
    "autocast_factory",
    "build_components",
    "build_data",
    "build_model",
    "build_model_with_terms",
    "check_data_fits",
    "model_kwargs_for",
    "monitor_spec",
    "resolve_device",
]
