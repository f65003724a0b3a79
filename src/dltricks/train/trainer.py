"""The training engine: an explicit, readable loop that applies a recipe's tricks.

One loop serves every task; what differs per task lives in an :class:`~.objectives.Objective`.
Per optimizer step, in order: forward under autocast (bf16 on CPU, fp16 + grad scaler on CUDA),
backward of ``loss / grad_accum`` for each micro-batch (DDP synchronises only on the last one),
unscale, total gradient norm, NaN/Inf check (error naming the step, or skip), clipping by norm or
value, optimizer step, LR schedule step, EMA update. Every ``eval_every_epochs`` the validation
metrics decide the best checkpoint and early stopping.

Reproducibility: the data order of epoch ``e`` is a permutation drawn from ``seed`` and ``e``
alone, and a checkpoint stores the global RNG state and the position inside the epoch, so a run
resumed from any checkpoint (after SIGINT, SIGTERM or kill -9) takes exactly the steps of an
uninterrupted run; on CPU with ``train.deterministic`` it reaches the same metrics bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import dltricks
from dltricks.data import ArrayDataset, DatasetSplits, create_dataset
from dltricks.models import create_model
from dltricks.models.registry import model_signature
from dltricks.train import checkpoint as ckpt
from dltricks.train.clip import GradNormStats, clip_gradients
from dltricks.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_from_env,
)
from dltricks.train.metrics import MetricAccumulator
from dltricks.train.objectives import Objective, make_objective
from dltricks.train.optim import build_optimizer
from dltricks.train.recipe import Recipe
from dltricks.train.run import MetricsLog, new_run_dir
from dltricks.train.schedules import build_scheduler

LOWER_IS_BETTER = ("loss", "nll", "ece")


class Callback:
    """Hooks into the loop; override what you need. Called on every process."""

    def on_step_end(self, trainer: Trainer) -> None:
        """After each optimizer step (``trainer.step`` is the new count)."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """After each epoch's evaluation (``metrics`` may be empty when none was due)."""

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """Once, with the final summary."""


class NonFiniteError(FloatingPointError):
    """The loss or the gradients became NaN/Inf (the message names the step)."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint was saved first (``.checkpoint`` says where)."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by signal {signum}; checkpoint saved at {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("Recipe asks for device 'cuda' but no CUDA device is available.")
    return torch.device(name)


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


def monitor_spec(recipe: Recipe, objective: Objective) -> tuple[str, str]:
    """(metric name, 'min' | 'max') watched on the validation split."""
    name = recipe.train.monitor or objective.default_monitor
    name = name.removeprefix("val/")
    return name, ("min" if name in LOWER_IS_BETTER else "max")


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> Tensor:
    """Indices of epoch ``epoch``: a permutation fixed by (seed, epoch), cut into full batches.

    Returns:
        (num_batches, batch_size) long tensor; the last incomplete batch is dropped so that
        every step sees the same batch size (and DDP ranks equal shares).
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    nb = n // batch_size
    return perm[: nb * batch_size].view(nb, batch_size)


class Trainer:
    """Trains one recipe into one run folder.

    Args:
        recipe: the validated recipe.
        run_dir: folder of this run; created under ``out`` when None.
        out: parent folder for new runs.
        data: prebuilt dataset splits (default: built from the recipe).
        resume: continue from the newest valid checkpoint in ``run_dir``.
        progress: show a rich progress bar.
        tensorboard: write TensorBoard events when the package is installed.
        max_steps_this_call: stop (with a checkpoint) after this many steps in this call; used to
            simulate an interruption.
        readonly: write nothing into ``run_dir`` (for evaluating a finished run).
        callbacks: :class:`Callback` objects called at step, epoch and fit end.
        console: a ``rich.console.Console`` for messages (default: a new one).

    Example:
        >>> from dltricks.train import Trainer, load_builtin_recipe
        >>> summary = Trainer(load_builtin_recipe("digits_cnn"), out="runs").fit()
        >>> summary["test"]["accuracy"]
    """

    def __init__(
        self,
        recipe: Recipe,
        run_dir: str | Path | None = None,
        *,
        out: str | Path = "runs",
        data: DatasetSplits | None = None,
        resume: bool = False,
        progress: bool = False,
        tensorboard: bool = True,
        max_steps_this_call: int | None = None,
        readonly: bool = False,
        callbacks: list[Callback] | None = None,
        console=None,
    ) -> None:
        self.recipe = recipe
        tc = recipe.train
        self.device = resolve_device(recipe.device)
        if tc.precision == "fp16" and self.device.type != "cuda":
            raise ValueError(
                "train.precision 'fp16' needs a CUDA device (fp16 with a grad scaler); "
                "on CPU use 'bf16'."
            )
        self.dist: DistInfo = init_from_env(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if recipe.data.batch_size % self.dist.world_size:
            raise ValueError(
                f"data.batch_size {recipe.data.batch_size} must be divisible by the number of "
                f"processes ({self.dist.world_size})."
            )
        torch.manual_seed(recipe.seed)

        if console is None:
            from rich.console import Console

            console = Console(stderr=True, quiet=not self.dist.is_main)
        self.console = console
        self.progress = progress and self.dist.is_main
        self.max_steps_this_call = max_steps_this_call
        self.callbacks = list(callbacks or [])

        # --- run folder (rank 0 creates it, the others learn its path)
        if self.dist.is_main:
            if run_dir is None:
                run_dir = new_run_dir(out, recipe.name)
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            if not resume and not readonly:
                ckpt.atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
        self.run_dir = Path(broadcast_object(str(run_dir) if run_dir else None, self.dist))
        self.ckpt_dir = self.run_dir / "checkpoints"
        writes = self.dist.is_main and not readonly
        self.log = MetricsLog(self.run_dir, tensorboard) if writes else None

        # --- data, model, objective
        self.data = data or create_dataset(recipe.data.name, seed=recipe.seed, **recipe.data.kwargs)
        if len(self.data.train) < recipe.data.batch_size:
            raise ValueError(
                f"data.batch_size {recipe.data.batch_size} exceeds the {len(self.data.train)} "
                f"training samples of {self.data.name!r}."
            )
        self.objective = make_objective(self.data.task, tc.label_smoothing, tc.dice_weight)
        self.model: nn.Module = self.build_model()
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        self.ema: AveragedModel | None = None
        if tc.ema.enabled:
            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema.decay), use_buffers=True
            )
        self.augment = self._build_augment()

        # --- optimisation
        self.micro_per_epoch = len(self.data.train) // recipe.data.batch_size
        self.steps_per_epoch = self.micro_per_epoch // tc.grad_accum
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"train.grad_accum {tc.grad_accum} leaves no optimizer step in an epoch of "
                f"{self.micro_per_epoch} batches."
            )
        self.total_steps = tc.steps or tc.epochs * self.steps_per_epoch  # type: ignore[operator]
        self.optimizer = build_optimizer(self.model, recipe.optimizer)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self.scheduler = build_scheduler(self.optimizer, recipe.schedule, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=tc.precision == "fp16")
        self.monitor, self.monitor_mode = monitor_spec(recipe, self.objective)
        known = self.objective.metric_names
        if self.monitor not in known and not self.monitor.startswith("dice_class"):
            raise ValueError(
                f"train.monitor {self.monitor!r} is not a validation metric of a "
                f"{self.data.task} run; available: {', '.join(known)}."
            )

        # --- loop state (all of it goes into checkpoints)
        self.step = 0
        self.epoch = 0
        self.micro_in_epoch = 0
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.skipped_steps = 0
        self.overflow_steps = 0  # fp16 steps the grad scaler skipped (Inf/NaN at the scale)
        self.train_meter = MetricAccumulator()
        self.window_meter = MetricAccumulator()
        self._pending: list[dict[str, Any]] = []  # per-step stats not yet summed (cheap append)
        self.grad_stats = GradNormStats()
        self._stop_signal: int | None = None
        if resume:
            self._restore()

    # ------------------------------------------------------------------ setup helpers

    def build_model(self) -> nn.Module:
        """A fresh model of the recipe, sized from the data, on the trainer's device."""
        name = self.recipe.model.name
        kwargs = model_kwargs_for(name, self.data, self.recipe.model.kwargs)
        return create_model(name, **kwargs).to(self.device)

    def _build_augment(self) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None:
        cfg = self.recipe.data.augment
        if not cfg.enabled:
            return None
        from dltricks.data.augment import build_augment

        return build_augment(
            cfg, self.data.spatial_dims, self.data.task, num_classes=self.data.num_classes
        )

    def _autocast(self):
        p = self.recipe.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights, as tensors and plain values (weights_only-loadable)."""
        self._fold_pending()
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "loop": {
                "step": self.step,
                "epoch": self.epoch,
                "micro_in_epoch": self.micro_in_epoch,
                "best": self.best,
                "best_step": self.best_step,
                "bad_evals": self.bad_evals,
                "skipped_steps": self.skipped_steps,
                "overflow_steps": self.overflow_steps,
            },
            "train_meter": self.train_meter.state_dict(),
            "window_meter": self.window_meter.state_dict(),
            "grad_stats": self.grad_stats.state_dict(),
        }
        if self.ema is not None:  # the EMA file holds the averaged weights; this, their count
            state["ema_n_averaged"] = self.ema.n_averaged.detach().cpu().clone()
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def save_checkpoint(self, reason: str, metrics: dict[str, float] | None = None) -> Path | None:
        """Writes a checkpoint of the current step (rank 0) and prunes old ones."""
        path = None
        if self.dist.is_main:
            meta = {
                "epoch": self.epoch,
                "reason": reason,
                "metrics": metrics or {},
                "version": dltricks.__version__,
                "recipe": self.recipe.name,
            }
            path = ckpt.save_checkpoint(
                self.ckpt_dir, self.step, self.model, self.state_dict(), meta,
                ema=self.ema.module if self.ema is not None else None,
            )
            protect = {self.best_step} if self.best_step is not None else set()
            ckpt.prune(self.ckpt_dir, self.recipe.train.checkpoint.keep_last, protect)
        barrier(self.dist)
        return path

    def _restore(self) -> None:
        found = ckpt.latest_valid(self.ckpt_dir)
        if found is None:
            raise ckpt.CheckpointError(f"No valid checkpoint to resume from in {self.ckpt_dir}.")
        found.load_model(self.model)
        state = found.load_state()
        if self.ema is not None:
            found.load_model(self.ema.module, "ema.safetensors")
            self.ema.n_averaged.copy_(state["ema_n_averaged"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        loop = state["loop"]
        self.step, self.epoch = loop["step"], loop["epoch"]
        self.micro_in_epoch = loop["micro_in_epoch"]
        self.best, self.best_step = loop["best"], loop["best_step"]
        self.bad_evals, self.skipped_steps = loop["bad_evals"], loop["skipped_steps"]
        self.overflow_steps = loop.get("overflow_steps", 0)
        self.train_meter.load_state_dict(state["train_meter"])
        self.window_meter.load_state_dict(state["window_meter"])
        self.grad_stats.load_state_dict(state["grad_stats"])
        if self.log is not None:
            dropped = self.log.truncate_after(self.step)
            self.console.print(
                f"Resumed from {found.path.name} (step {self.step}, epoch {self.epoch}); "
                f"dropped {dropped} log records written after it."
            )

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, split: str = "val", model: nn.Module | None = None) -> dict[str, float]:
        """Metrics of ``model`` (default: the EMA weights if on, else the model) on a split.

        Under DDP each process scores a shard and the sums are all-reduced.
        """
        ds: ArrayDataset = self.data.split(split)
        model = model or (self.ema.module if self.ema is not None else self.model)
        was_training = model.training
        model.eval()
        meter = MetricAccumulator()
        bs = self.recipe.data.eval_batch_size or self.recipe.data.batch_size
        shard = torch.arange(len(ds))[self.dist.rank :: self.dist.world_size]
        for idx in shard.split(bs):
            x, y = ds.x[idx].to(self.device), ds.y[idx].to(self.device)
            with self._autocast():
                logits = model(x)
            _, stats = self.objective(logits.float(), y)
            meter.update_dict(stats)
        if self.dist.enabled:
            meter.from_vector(all_reduce_sum(meter.as_vector(), self.dist))
        model.train(was_training)
        return meter.compute()

    # ------------------------------------------------------------------ the loop

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Micro-batches from the current position to the end of the epoch (this rank's share)."""
        train = self.data.train
        batches = epoch_batches(len(train), self.recipe.data.batch_size, self.recipe.seed,
                                self.epoch)
        used = self.steps_per_epoch * self.recipe.train.grad_accum
        per_rank = self.recipe.data.batch_size // self.dist.world_size
        lo = self.dist.rank * per_rank
        for b in range(self.micro_in_epoch, used):
            idx = batches[b, lo : lo + per_rank]  # this process's contiguous share
            yield train.x[idx], train.y[idx]

    def _add_auxiliary_loss(self, loss: Tensor, target: Tensor) -> Tensor:
        """Adds ``model.auxiliary_loss(target, loss_fn)`` where the model defines it: a loss on
        outputs other than the returned logits (intermediate early-exit heads), kept by the
        model during its training forward and scored with this objective's loss. The logged
        ``loss`` stays the task loss of the returned logits."""
        aux = getattr(self.model, "auxiliary_loss", None)
        if aux is None:
            return loss
        extra = aux(target, self.objective.loss)
        return loss if extra is None else loss + extra

    def _optimizer_step(self) -> None:
        tc = self.recipe.train
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self._params if p.grad is not None]
        norm, clipped = clip_gradients(params, tc.clip.mode, tc.clip.max)
        norm_value = float(norm)  # one host sync per step, needed for the NaN/Inf decision
        finite = math.isfinite(norm_value)
        self.grad_stats.record(norm_value, clipped)
        if not finite and not self.scaler.is_enabled():
            if tc.nonfinite == "error":
                raise NonFiniteError(
                    f"Non-finite loss or gradient at step {self.step + 1} (epoch {self.epoch}, "
                    f"batch {self.micro_in_epoch}); set train.nonfinite=skip to skip such steps, "
                    f"or lower the learning rate / enable gradient clipping."
                )
            self.skipped_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
        else:
            # the scaler skips fp16 steps with Inf gradients by itself and lowers its scale
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if scale is not None and self.scaler.get_scale() < scale:
                self.overflow_steps += 1
            elif self.ema is not None:
                self.ema.update_parameters(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # a step skipped by the fp16 scaler makes torch warn that the schedule runs ahead
            # of the optimizer; the schedule counts steps taken, skipped or not, on purpose
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        self.step += 1

    def _signal_handler(self, signum, frame) -> None:
        self._stop_signal = signum

    @contextlib.contextmanager
    def _catch_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self._signal_handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def fit(self) -> dict[str, Any]:
        """Trains to the end of the recipe (or early stopping) and returns the summary.

        With ``train.deterministic`` PyTorch's deterministic algorithms are switched on for the
        duration of the call and the previous setting is restored afterwards.
        """
        previous = torch.are_deterministic_algorithms_enabled()
        previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        if self.recipe.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit()
        finally:
            torch.use_deterministic_algorithms(previous, warn_only=previous_warn)

    def _fit(self) -> dict[str, Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        tc = self.recipe.train
        accum = tc.grad_accum
        self.ddp_model.train()
        if self.ema is not None:
            self.ema.module.train()
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=not self.progress, transient=False,
        )
        stopped_early = False
        steps_this_call = 0
        t_window, n_window = time.perf_counter(), 0
        with self._catch_signals(), progress:
            task = progress.add_task(self.recipe.name, total=self.total_steps,
                                     completed=self.step, info="")
            while self.step < self.total_steps and not stopped_early:
                for micro, (x, y) in enumerate(self._batches()):
                    x, y = x.to(self.device), y.to(self.device)
                    if self.augment is not None:
                        x, y = self.augment(x, y)
                    last_micro = (micro + 1) % accum == 0
                    sync = contextlib.nullcontext()
                    if self.dist.enabled and not last_micro:
                        sync = self.ddp_model.no_sync()
                    with sync:
                        with self._autocast():
                            logits = self.ddp_model(x)
                        loss, stats = self.objective(logits.float(), y, detailed=False)
                        loss = self._add_auxiliary_loss(loss, y)
                        self.scaler.scale(loss / accum if accum > 1 else loss).backward()
                    self._pending.append(stats)
                    self.micro_in_epoch += 1
                    n_window += x.shape[0] * self.dist.world_size
                    if not last_micro:
                        continue
                    lr = self.optimizer.param_groups[0]["lr"]
                    self._optimizer_step()
                    steps_this_call += 1
                    for cb in self.callbacks:
                        cb.on_step_end(self)
                    if self.progress:
                        progress.update(task, completed=self.step)
                    if self.step % tc.log_every_steps == 0 or self.step == self.total_steps:
                        rate = n_window / max(time.perf_counter() - t_window, 1e-9)
                        rec = self._log_train(lr, rate)
                        t_window, n_window = time.perf_counter(), 0
                        progress.update(task, completed=self.step,
                                        info=f"loss {rec['loss']:.4f} lr {lr:.2e} "
                                        f"{rate:,.0f} samples/s")
                    every = tc.checkpoint.every_steps
                    if every and self.step % every == 0:
                        self.save_checkpoint("every_steps")
                    if self._stop_signal is not None:
                        path = self.save_checkpoint(f"signal {self._stop_signal}")
                        raise TrainingInterrupted(self._stop_signal, path)
                    if self.max_steps_this_call and steps_this_call >= self.max_steps_this_call:
                        path = self.save_checkpoint("max_steps_this_call")
                        raise TrainingInterrupted(0, path)
                    if self.step >= self.total_steps:
                        break
                else:  # the epoch ran to its end
                    stopped_early = self._end_epoch()
                    continue
                break  # total steps reached inside the epoch
            progress.update(task, completed=self.step)
        if self.step >= self.total_steps and self.micro_in_epoch:
            self._end_epoch(final=True)
        return self._finish(stopped_early)

    def _fold_pending(self) -> None:
        """Adds the per-step statistics collected since the last fold to the window's sums."""
        if not self._pending:
            return
        for key in self._pending[0]:
            values = [s[key] for s in self._pending]
            total = torch.stack(values).sum(0) if isinstance(values[0], Tensor) else sum(values)
            self.window_meter.update(key, total)
        self._pending.clear()

    def _flush_window(self) -> None:
        """Sums the training window over processes and adds it to the epoch's sums."""
        self._fold_pending()
        if self.dist.enabled:
            self.window_meter.from_vector(all_reduce_sum(self.window_meter.as_vector(),
                                                         self.dist))
        self.train_meter.merge(self.window_meter)

    def _log_train(self, lr: float, rate: float) -> dict[str, Any]:
        self._flush_window()
        rec = {"split": "train", "step": self.step, "epoch": self.epoch, "lr": lr,
               "samples_per_s": rate, **self.window_meter.compute()}
        if len(self.grad_stats):
            rec["grad_norm"] = self.grad_stats.norms[-1]
        self.window_meter.reset()
        if self.log is not None:
            self.log.write(rec)
        return rec

    def _end_epoch(self, final: bool = False) -> bool:
        """Evaluates, checkpoints, moves to the next epoch; returns True to stop early."""
        tc = self.recipe.train
        epoch_done = self.epoch + 1
        metrics: dict[str, float] = {}
        stop = False
        self._flush_window()
        self.window_meter.reset()
        if final or epoch_done % tc.eval_every_epochs == 0 or self.step >= self.total_steps:
            metrics = self.evaluate("val")
            if self.log is not None:
                train_metrics = self.train_meter.compute()
                self.log.write({"split": "train_epoch", "step": self.step, "epoch": self.epoch,
                                **train_metrics})
                self.log.write({"split": "val", "step": self.step, "epoch": self.epoch,
                                **metrics})
            stop = self._update_best(metrics)
        self.train_meter.reset()
        self.epoch += 1
        self.micro_in_epoch = 0
        self.save_checkpoint("epoch_end", metrics)
        for cb in self.callbacks:
            cb.on_epoch_end(self, metrics)
        return stop

    def _update_best(self, metrics: dict[str, float]) -> bool:
        if self.monitor not in metrics:
            raise ValueError(
                f"train.monitor {self.monitor!r} is not a validation metric; "
                f"available: {', '.join(sorted(metrics))}."
            )
        value = metrics[self.monitor]
        delta = self.recipe.train.early_stopping.min_delta
        better = self.best is None or (
            value < self.best - delta if self.monitor_mode == "min" else value > self.best + delta
        )
        if better:
            self.best, self.best_step, self.bad_evals = value, self.step, 0
        else:
            self.bad_evals += 1
        patience = self.recipe.train.early_stopping.patience
        return patience is not None and self.bad_evals >= patience

    def _finish(self, stopped_early: bool) -> dict[str, Any]:
        last = self.evaluate("test")
        best = last
        if self.best_step is not None and self.best_step != self.step:
            found = ckpt.verify(self.ckpt_dir / ckpt.checkpoint_name(self.best_step))
            model = self.build_model()
            found.load_model(model, "ema.safetensors" if self.ema is not None else
                             "model.safetensors")
            best = self.evaluate("test", model)
        summary = {
            "recipe": self.recipe.name,
            "run_dir": str(self.run_dir),
            "steps": self.step,
            "epochs": self.epoch,
            "stopped_early": stopped_early,
            "skipped_steps": self.skipped_steps,
            "fp16_overflow_steps": self.overflow_steps,
            "monitor": self.monitor,
            "best_val": self.best,
            "best_step": self.best_step,
            "test": best,
            "test_last": last,
            "grad_norm": self.grad_stats.summary(),
            "num_params": sum(p.numel() for p in self.model.parameters()),
            "version": dltricks.__version__,
        }
        if self.log is not None:
            self.log.write({"split": "test", "step": self.step, "epoch": self.epoch, **best})
            self.log.close()
            ckpt.atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        for cb in self.callbacks:
            cb.on_fit_end(self, summary)
        return summary


def checkpoint_weights_file(run_dir: Path, which: str = "best") -> tuple[ckpt.Checkpoint, str]:
    """The checkpoint to evaluate (``best`` or ``last``) and which weights file in it."""
    run_dir = Path(run_dir)
    found = ckpt.latest_valid(run_dir / "checkpoints")
    if found is None:
        raise ckpt.CheckpointError(f"No valid checkpoint in {run_dir / 'checkpoints'}.")
    if which == "best":
        state = found.load_state()
        best_step = state["loop"]["best_step"]
        if best_step is not None and best_step != found.step:
            found = ckpt.verify(run_dir / "checkpoints" / ckpt.checkpoint_name(best_step))
    elif which != "last":
        raise ValueError(f"Unknown checkpoint {which!r}; use 'best' or 'last'.")
    file = "ema.safetensors" if (found.path / "ema.safetensors").exists() else "model.safetensors"
    return found, file


__all__ = [
    "Callback",
    "NonFiniteError",
    "Trainer",
    "TrainingInterrupted",
    "checkpoint_weights_file",
    "epoch_batches",
]
