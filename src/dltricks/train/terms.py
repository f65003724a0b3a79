"""Extension points of the training loop: loss terms added to the supervised loss.

Distillation, semi-supervised learning and domain adaptation do not need loops of their own.
Each is a :class:`LossTerm`: something that, once per micro-batch, looks at the labelled batch,
the model's outputs on it and, where it needs them, batches of extra data streams (unlabelled
samples, a second domain), and returns extra loss terms. The engine adds them, times the
weight the recipe gives, to the supervised loss before the backward pass::

    total = task_loss(model(x), y) + sum_i weight_i * term_i(step)

A term with ``weight: 0`` is a metric: it is computed without gradients and logged, never
added to the total (so a NaN in it cannot reach the weights). The built-in ``task_scale`` term
(:class:`TaskScale`) scales the task loss itself, e.g. for Hinton's ``(1 - alpha)`` share.

A recipe switches terms on by name::

    objectives:
      - {name: distill, weight: 1.0, kwargs: {teacher: runs/big, temperature: 4.0}}

Life cycle of a term (all on every process):

1. constructed from ``kwargs`` (checked against the constructor's signature first);
2. :meth:`LossTerm.setup` once, after data and model are built and **before** the optimizer:
   it may freeze or replace ``ctx.model``, build extra trainable modules (returned by
   :meth:`LossTerm.trainable_modules`, so the optimizer, the checkpoint and train/eval mode
   include them), and register data streams with :meth:`TermContext.add_stream`;
3. ``term(step)`` per micro-batch, with a :class:`StepContext`; returns a scalar tensor or a
   dict of them (each is logged as ``term/<name>`` or ``term/<name>/<key>``);
4. :meth:`LossTerm.on_step_end` after each optimizer step (e.g. to update a mean teacher);
5. :meth:`LossTerm.state_dict` / :meth:`LossTerm.load_state_dict` go into every checkpoint
   with the stream positions, so a resumed run takes exactly the steps of an uninterrupted one.

Names resolve through the Python entry-point group ``dltricks.terms`` (how the paradigms in
``dltricks.methods`` plug in without ``train`` importing them) and through an in-process
registry, :func:`register_term`, for tests and user code.

A stream's batch ``k`` is drawn from a permutation fixed by (recipe seed, stream name, pass
over the stream), so the batches depend only on the seed and on how many batches were drawn
before, which the checkpoint records.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dltricks.train.kwargs import check_kwargs, missing_required

ENTRY_POINT_GROUP = "dltricks.terms"

# --------------------------------------------------------------------------- model outputs


@dataclass
class ModelOutput:
    """What the model returned on a batch, in one structure.

    Attributes:
        logits: the model's (final) predictions, float32.
        exit_logits: logits of intermediate early exits, shallowest first (training forwards
            of models with exits; empty otherwise).
        exit_weights: the loss weight of each intermediate exit.
    """

    logits: Tensor
    exit_logits: tuple[Tensor, ...] = ()
    exit_weights: tuple[float, ...] = ()


def as_model_output(out: Any) -> ModelOutput:
    """Wraps what a model's forward returned: a tensor, or an object with ``logits`` (and
    ``exit_logits`` / ``exit_weights`` for models with early exits)."""
    if isinstance(out, ModelOutput):
        return out
    if isinstance(out, Tensor):
        return ModelOutput(out)
    logits = getattr(out, "logits", None)
    if not isinstance(logits, Tensor):
        raise TypeError(
            f"The model returned {type(out).__name__}; the engine needs a tensor of logits or "
            "an object with a 'logits' tensor."
        )
    return ModelOutput(logits, tuple(getattr(out, "exit_logits", ()) or ()),
                       tuple(getattr(out, "exit_weights", ()) or ()))


# --------------------------------------------------------------------------- data streams


def _stream_seed(seed: int, name: str, epoch: int) -> int:
    digest = hashlib.sha256(f"{seed}/{name}/{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class Stream:
    """An extra source of batches (unlabelled data, a second domain) registered by a term.

    Batches are full (the tail of each pass is dropped) and each process takes a contiguous
    share of the global batch, as for the labelled data.

    Args:
        name: stream name (also part of its seed).
        x: inputs (N, ...).
        y: targets (N, ...) or None.
        batch_size: global batch size (all processes together).
        seed: the recipe seed.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, name: str, x: Tensor, y: Tensor | None, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if y is not None and len(y) != len(x):
            raise ValueError(f"Stream {name!r}: x has {len(x)} samples but y has {len(y)}.")
        if batch_size <= 0 or batch_size > len(x):
            raise ValueError(
                f"Stream {name!r}: batch_size {batch_size} must be between 1 and the stream's "
                f"{len(x)} samples."
            )
        if batch_size % world_size:
            raise ValueError(f"Stream {name!r}: batch_size {batch_size} must be divisible by "
                             f"the number of processes ({world_size}).")
        self.name, self.x, self.y = name, x, y
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.per_pass = len(x) // batch_size
        self.draws = 0  # batches drawn so far: the stream's whole state
        self._perm: tuple[int, Tensor] | None = None

    def indices(self, draw: int) -> Tensor:
        """Sample indices of this process's share of batch number ``draw``."""
        epoch, b = divmod(draw, self.per_pass)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(_stream_seed(self.seed, self.name, epoch))
            self._perm = (epoch, torch.randperm(len(self.x), generator=g))
        share = self.batch_size // self.world_size
        lo = b * self.batch_size + self.rank * share
        return self._perm[1][lo : lo + share]

    def next(self, device: torch.device | None = None) -> tuple[Tensor, Tensor | None]:
        """The next batch ``(x, y)`` (y None for an unlabelled stream), moved to ``device``."""
        idx = self.indices(self.draws)
        self.draws += 1
        x = self.x[idx].to(device) if device is not None else self.x[idx]
        y = None if self.y is None else (self.y[idx].to(device) if device is not None
                                         else self.y[idx])
        return x, y


# --------------------------------------------------------------------------- contexts


@dataclass
class TermContext:
    """What :meth:`LossTerm.setup` sees; the engine builds the optimizer after all setups.

    Attributes:
        recipe: the validated recipe.
        data: the dataset splits (``data.train.x`` etc.).
        model: the model, unwrapped, on ``device``. A term may freeze parameters
            (``requires_grad_(False)``) or assign a new module here (e.g. the backbone wrapped
            with adapters); the engine trains and checkpoints whatever ``ctx.model`` is after
            the setups.
        objective: the task's :class:`~dltricks.train.objectives.Objective` (its ``loss``).
        device: where the model lives.
        seed: the recipe seed.
        run_dir: the run folder (None when the engine writes nothing).
        total_steps, steps_per_epoch: length of the run in optimizer steps.
        rank, world_size: this process and the number of processes (DDP).
        build_model: returns a fresh model of the recipe on ``device`` (e.g. a teacher of the
            same architecture).
        autocast: the run's autocast context manager factory.
    """

    recipe: Any
    data: Any
    model: nn.Module
    objective: Any
    device: torch.device
    seed: int
    run_dir: Path | None
    total_steps: int
    steps_per_epoch: int
    rank: int = 0
    world_size: int = 1
    build_model: Callable[[], nn.Module] | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    streams: dict[str, Stream] = field(default_factory=dict)

    def add_stream(self, name: str, x: Tensor, y: Tensor | None = None,
                   batch_size: int | None = None) -> Stream:
        """Registers a data stream the term draws from with :meth:`StepContext.batch`.

        Args:
            name: unique name (also seeds its order); stream positions are checkpointed.
            x: inputs (N, ...), kept on the CPU; batches move to the device when drawn.
            y: targets or None (unlabelled).
            batch_size: global batch size (default: the recipe's ``data.batch_size``).
        """
        if name in self.streams:
            raise ValueError(f"A stream named {name!r} is already registered.")
        bs = batch_size or self.recipe.data.batch_size
        stream = Stream(name, x, y, bs, self.seed, self.rank, self.world_size)
        self.streams[name] = stream
        return stream


@dataclass
class StepContext:
    """What a term sees on each micro-batch.

    Attributes:
        model: the model, unwrapped (parameters, submodules, hooks).
        ddp_model: the module to call for forwards (the DDP wrapper under torchrun).
        x, y: the labelled micro-batch after augmentation (``y`` may be soft under mixup).
        outputs: the model's outputs on ``x`` (logits, early-exit logits).
        loss: the supervised task loss of ``outputs`` (already part of the total).
        step: optimizer steps done before this micro-batch (in :meth:`LossTerm.on_step_end`:
            after the step).
        total_steps: optimizer steps of the whole run.
        epoch: the current epoch.
        micro: index of this micro-batch within its optimizer step (gradient accumulation).
        device: the training device.
        objective: the task objective (``objective.loss(logits, target)``).
    """

    model: nn.Module
    ddp_model: nn.Module
    x: Tensor
    y: Tensor
    outputs: ModelOutput
    loss: Tensor
    step: int
    total_steps: int
    epoch: int
    micro: int
    device: torch.device
    objective: Any
    streams: dict[str, Stream] = field(default_factory=dict)
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    @property
    def progress(self) -> float:
        """Fraction of the run done, in [0, 1] (for ramps such as DANN's lambda)."""
        return self.step / max(self.total_steps, 1)

    def batch(self, stream: str) -> tuple[Tensor, Tensor | None]:
        """The next batch ``(x, y)`` of a registered stream, on the device."""
        if stream not in self.streams:
            known = ", ".join(self.streams) or "(none)"
            raise KeyError(f"No stream named {stream!r}; registered: {known}.")
        return self.streams[stream].next(self.device)

    def forward(self, x: Tensor) -> ModelOutput:
        """Runs ``x`` through the (DDP) model under the run's autocast; logits come back in
        float32. Under DDP prefer one forward of a concatenated batch to several forwards."""
        with self.autocast():
            out = as_model_output(self.ddp_model(x))
        return ModelOutput(out.logits.float(), tuple(t.float() for t in out.exit_logits),
                           out.exit_weights)


# --------------------------------------------------------------------------- the base class


class LossTerm:
    """Base class of an extra loss term; override :meth:`__call__` and what else you need.

    Attributes:
        name: the term's registered name (set by the registry; used in logs).
    """

    name: ClassVar[str] = ""

    def setup(self, ctx: TermContext) -> None:
        """Once, after data and model are built and before the optimizer is."""

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Extra modules this term trains alongside the model (a domain discriminator): the
        engine adds their parameters to the optimizer (see :meth:`param_groups`), saves their
        weights in every checkpoint and switches them between train and eval mode."""
        return {}

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the extra modules; default: one group with all their
        trainable parameters and the recipe's optimizer settings. Override to give a group its
        own ``lr`` or ``weight_decay``."""
        params = [p for m in self.trainable_modules().values() for p in m.parameters()
                  if p.requires_grad]
        return [{"params": params}] if params else []

    def __call__(self, step: StepContext) -> Tensor | dict[str, Tensor]:
        """Extra loss(es) for this micro-batch: a scalar tensor or a dict of scalar tensors."""
        raise NotImplementedError

    def on_step_end(self, step: StepContext) -> None:
        """After each optimizer step (``step.step`` counts it already)."""

    def state_dict(self) -> dict[str, Any]:
        """State beyond the trainable modules' weights that a resumed run needs (tensors and
        plain values only: it is loaded with ``weights_only=True``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""


# --------------------------------------------------------------------------- built-in terms


class TaskScale(LossTerm):
    """Scales the supervised task loss: with it the total is ``scale * task_loss + ...``.

    The engine always adds the task loss once; this term adds ``(scale - 1) * task_loss`` (the
    same tensor, not a second computation), so the gradient is exactly ``scale`` times the task
    loss's. It makes mixtures such as Hinton et al.'s (2015) ``(1 - alpha) CE + alpha T^2 KL``
    expressible with any soft term::

        objectives:
          - {name: task_scale, kwargs: {scale: 0.1}}            # (1 - alpha) CE
          - {name: distill, weight: 0.9, kwargs: {teacher: runs/big, mix: false}}  # alpha T^2 KL

    Early-exit losses of the model are not scaled. Logs ``term/task_scale`` (the added part).

    Args:
        scale: factor of the task loss, >= 0 (0: train on the other terms only).
    """

    def __init__(self, scale: float) -> None:
        if not (isinstance(scale, int | float) and scale >= 0):
            raise ValueError(f"task_scale: scale must be a number >= 0, got {scale!r}.")
        self.scale = float(scale)

    def __call__(self, step: StepContext) -> Tensor:
        return (self.scale - 1.0) * step.loss


#: Terms of this module, always available (the paradigms come through entry points).
BUILTIN_TERMS: dict[str, type[LossTerm]] = {"task_scale": TaskScale}


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[LossTerm]] = {}


def register_term(name: str, cls: type[LossTerm] | None = None):
    """Registers a term class under ``name`` in this process (tests, user code).

    Usable as ``register_term("l2", L2Term)`` or as a class decorator ``@register_term("l2")``.
    """

    def add(c: type[LossTerm]) -> type[LossTerm]:
        if not (inspect.isclass(c) and issubclass(c, LossTerm)):
            raise TypeError(f"register_term({name!r}): {c!r} is not a LossTerm subclass.")
        _REGISTRY[name] = c
        return c

    return add if cls is None else add(cls)


def unregister_term(name: str) -> None:
    """Removes a term registered with :func:`register_term` (no error if absent)."""
    _REGISTRY.pop(name, None)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_terms() -> list[str]:
    """Names of every term available: built in, registered in-process or through entry
    points."""
    return sorted(set(BUILTIN_TERMS) | set(_REGISTRY) | set(_entry_points()))


def resolve_term(name: str) -> type[LossTerm]:
    """The term class registered under ``name``; an unknown name lists the known ones."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in BUILTIN_TERMS:
        return BUILTIN_TERMS[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(known_terms()) or "(none)"
        raise ValueError(f"Unknown objective {name!r}; known objectives: {known}.")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken plug-in: say which one
        raise ValueError(
            f"Objective {name!r} (entry point {eps[name].value}) failed to load: {exc}"
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, LossTerm)):
        raise ValueError(f"Objective {name!r} ({eps[name].value}) is not a LossTerm subclass.")
    return cls


@dataclass
class BoundTerm:
    """A term built from a recipe entry, with its weight and the name used in logs."""

    key: str
    weight: float
    term: LossTerm


def build_terms(specs: list[Any]) -> list[BoundTerm]:
    """Builds the terms of a recipe's ``objectives`` list (entries with name, weight, kwargs).

    Raises:
        ValueError: an unknown name (listing the known ones) or kwargs that do not fit the
            term's constructor (naming the bad key and the allowed ones).
    """
    out: list[BoundTerm] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        cls = resolve_term(spec.name)
        where = f"objectives[{i}] ({spec.name}) kwargs"
        check_kwargs(cls, dict(spec.kwargs), where)
        missing = missing_required(cls, dict(spec.kwargs))
        if missing:
            raise ValueError(f"{where}: missing required key{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(map(repr, missing))}.")
        term = cls(**spec.kwargs)
        n = seen.get(spec.name, 0)
        seen[spec.name] = n + 1
        out.append(BoundTerm(spec.name if n == 0 else f"{spec.name}_{n}", float(spec.weight),
                             term))
    return out


def term_losses(bound: BoundTerm, step: StepContext) -> Iterator[tuple[str, Tensor]]:
    """The (log name, unweighted scalar loss) pairs a term returns for one micro-batch."""
    value = bound.term(step)
    items = value.items() if isinstance(value, dict) else [("", value)]
    for key, loss in items:
        log = f"term/{bound.key}" + (f"/{key}" if key else "")
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(
                f"Objective {bound.key!r} returned {type(loss).__name__}"
                f"{'' if not isinstance(loss, Tensor) else f' of shape {tuple(loss.shape)}'} "
                f"for {log!r}; a term must return a scalar tensor or a dict of them."
            )
        yield log, loss.reshape(())


__all__ = [
    "BUILTIN_TERMS",
    "ENTRY_POINT_GROUP",
    "BoundTerm",
    "LossTerm",
    "ModelOutput",
    "StepContext",
    "Stream",
    "TaskScale",
    "TermContext",
    "as_model_output",
    "build_terms",
    "known_terms",
    "register_term",
    "resolve_term",
    "term_losses",
    "unregister_term",
]
