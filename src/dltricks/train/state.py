"""The training state: the one list of what a checkpoint holds besides the weights.

:class:`TrainState` owns the loop counters (:class:`LoopState`) and the running sums, and
reads the stateful components (optimizer, schedule, grad scaler, EMA count, loss terms, data
streams) when asked for its :meth:`~TrainState.state_dict`. Loading puts everything back
except the global RNG, which :meth:`~TrainState.apply_rng` restores when training starts, so
that building a :class:`~dltricks.train.trainer.Trainer` has no global side effect.

Everything in the dict is a tensor or a plain Python value: ``torch.load(weights_only=True)``
reads it without unpickling code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor

from dltricks.train.clip import GradNormStats
from dltricks.train.components import Components
from dltricks.train.metrics import MetricAccumulator


@dataclass
class LoopState:
    """Where the loop is.

    Attributes:
        step: optimizer steps done.
        epoch: current epoch (0-based).
        micro_in_epoch: micro-batches of the current epoch already consumed.
        best, best_step: best validation value of the monitored metric and its step.
        bad_evals: evaluations since the last improvement (early stopping).
        skipped_steps: steps skipped for a non-finite loss or gradient.
        overflow_steps: fp16 steps the grad scaler skipped.
        stopped_early: early stopping ended the run.
    """

    step: int = 0
    epoch: int = 0
    micro_in_epoch: int = 0
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    skipped_steps: int = 0
    overflow_steps: int = 0
    stopped_early: bool = False


class TrainState:
    """Loop counters, running sums and the state of every stateful component.

    Args:
        components: the run's parts (their state is read and written in place).
    """

    def __init__(self, components: Components) -> None:
        self.components = components
        self.loop = LoopState()
        self.train_meter = MetricAccumulator()  # sums of the current epoch
        self.window_meter = MetricAccumulator()  # sums since the last train log record
        self.grad_stats = GradNormStats()
        self.rng_cpu: Tensor | None = None  # loaded, applied by apply_rng when training starts
        self.rng_cuda: list[Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``state.pt``: everything but the model and EMA weights."""
        c = self.components
        state: dict[str, Any] = {
            "optimizer": c.optimizer.state_dict(),
            "scheduler": c.scheduler.state_dict(),
            "scaler": c.scaler.state_dict(),
            # a loaded RNG state not yet applied (before fit) is the state of this checkpoint
            "rng_cpu": self.rng_cpu if self.rng_cpu is not None else torch.get_rng_state(),
            "loop": asdict(self.loop),
            "train_meter": self.train_meter.state_dict(),
            "window_meter": self.window_meter.state_dict(),
            "grad_stats": self.grad_stats.state_dict(),
            "streams": {name: s.draws for name, s in c.streams.items()},
            "terms": {
                b.key: {
                    "state": b.term.state_dict(),
                    "modules": {n: m.state_dict() for n, m in b.term.trainable_modules().items()},
                }
                for b in c.terms
            },
        }
        if c.ema is not None:  # the EMA file holds the averaged weights; this, their count
            state["ema_n_averaged"] = c.ema.n_averaged.detach().cpu().clone()
        if self.rng_cuda is not None:
            state["rng_cuda"] = self.rng_cuda
        elif torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (older checkpoints without terms or streams load too).

        Raises:
            ValueError: the state does not fit the components (another optimizer, other
                terms); the message names the part.
        """
        c = self.components
        # the schedule's shape comes from the recipe (a resumed run may be longer), its
        # position from the checkpoint: keep the freshly built lambdas' settings
        lambdas = [dict(vars(f)) for f in getattr(c.scheduler, "lr_lambdas", [])
                   if hasattr(f, "__dict__")]
        parts = [("optimizer", c.optimizer), ("scheduler", c.scheduler), ("scaler", c.scaler)]
        for name, obj in parts:
            try:
                obj.load_state_dict(state[name])
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                raise ValueError(f"the {name} state does not fit ({exc})") from None
        for f, settings in zip(getattr(c.scheduler, "lr_lambdas", []), lambdas, strict=False):
            vars(f).update(settings)
        if c.ema is not None:
            if "ema_n_averaged" not in state:
                raise ValueError("the checkpoint has no EMA state but train.ema is enabled")
            c.ema.n_averaged.copy_(state["ema_n_averaged"])
        known = {f.name for f in fields(LoopState)}
        self.loop = LoopState(**{k: v for k, v in state["loop"].items() if k in known})
        self.train_meter.load_state_dict(state["train_meter"])
        self.window_meter.load_state_dict(state["window_meter"])
        self.grad_stats.load_state_dict(state["grad_stats"])
        draws = state.get("streams", {})
        for name, stream in c.streams.items():
            stream.draws = int(draws.get(name, 0))
        saved_terms = state.get("terms", {})
        for b in c.terms:
            if b.key not in saved_terms:
                raise ValueError(f"the checkpoint holds no state for objective {b.key!r}")
            saved = saved_terms[b.key]
            for n, m in b.term.trainable_modules().items():
                m.load_state_dict(saved["modules"][n])
            b.term.load_state_dict(saved["state"])
        self.rng_cpu = state["rng_cpu"]
        self.rng_cuda = state.get("rng_cuda")

    def apply_rng(self, seed: int) -> None:
        """Seeds the global RNG for a fresh run, or restores a loaded checkpoint's RNG."""
        if self.rng_cpu is None:
            torch.manual_seed(seed)
            return
        torch.set_rng_state(self.rng_cpu)
        if self.rng_cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self.rng_cuda)
        self.rng_cpu = self.rng_cuda = None  # from now on the global RNG is the state


__all__ = ["LoopState", "TrainState"]
