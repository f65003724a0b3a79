"""The training engine: an explicit, readable loop that applies a recipe's tricks.

The engine is in parts, after torchtune's recipe interface:

* :func:`~dltricks.train.components.build_components` builds the data, model, objective,
  loss terms, EMA, augmentation, optimizer and schedule from the recipe (no file written, no
  global seed set);
* :class:`~dltricks.train.state.TrainState` is the one list of what a checkpoint holds;
* :func:`~dltricks.train.evaluate.evaluate` scores a model on a split without an optimizer;
* :class:`Trainer` owns the run folder (lock, recipe, metrics, checkpoints) and the loop.

One loop serves every task; what differs per task lives in an :class:`~.objectives.Objective`,
and what differs per paradigm (distillation, semi-supervised, domain adaptation) in
:class:`~.terms.LossTerm` objects named by the recipe's ``objectives``. Per micro-batch: forward
under autocast (bf16 on CPU, fp16 + grad scaler on CUDA), task loss, early-exit losses from the
model's returned outputs, the terms' losses times their weights, backward of
``loss / grad_accum`` (DDP synchronises only on the last micro-batch). Per optimizer step:
unscale, total gradient norm, NaN/Inf check (error naming the step, or skip), clipping by norm
or value, optimizer step, LR schedule step, EMA update, the terms' ``on_step_end``. At each
epoch's end the validation metrics decide the best checkpoint and early stopping.

Reproducibility: the data order of epoch ``e`` is a permutation drawn from ``seed`` and ``e``
alone, extra streams are drawn the same way, and a checkpoint stores the global RNG state and
the position inside the epoch, so a run resumed from any checkpoint (after SIGINT, SIGTERM or
kill -9) takes exactly the steps of an uninterrupted run; on CPU with ``train.deterministic``
it reaches the same metrics bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import dltricks
from dltricks.data import DatasetSplits
from dltricks.train import checkpoint as ckpt
from dltricks.train.clip import clip_gradients
from dltricks.train.components import (
    LOWER_IS_BETTER,
    Components,
    build_components,
    build_model,
    model_kwargs_for,
    monitor_spec,
    resolve_device,
)
from dltricks.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_from_env,
)
from dltricks.train.evaluate import checkpoint_weights_file
from dltricks.train.evaluate import evaluate as evaluate_model
from dltricks.train.recipe import Recipe
from dltricks.train.run import (
    MetricsLog,
    RunFolderError,
    RunLock,
    check_run_folder,
    clear_run_folder,
    make_dir,
    new_run_dir,
)
from dltricks.train.state import LoopState, TrainState
from dltricks.train.terms import ModelOutput, StepContext, as_model_output, term_losses
from dltricks.utils.io import atomic_write_text


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


class TrainingOutOfMemory(ValueError):
    """The device ran out of memory; the message suggests a smaller ``data.batch_size``."""


class ResumeError(ValueError):
    """The recipe no longer fits the run's checkpoint (another model, optimizer or terms)."""


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError | MemoryError) and (
        "out of memory" in text.lower() or "can't allocate memory" in text
        or isinstance(exc, MemoryError))


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


def _loop_field(name: str, doc: str) -> property:
    def get(self: Trainer) -> Any:
        return getattr(self.state.loop, name)

    def set_(self: Trainer, value: Any) -> None:
        setattr(self.state.loop, name, value)

    return property(get, set_, doc=doc)


def _component_field(name: str, doc: str) -> property:
    def get(self: Trainer) -> Any:
        return getattr(self.components, name)

    def set_(self: Trainer, value: Any) -> None:
        setattr(self.components, name, value)  # checkpoints then save the new object

    return property(get, set_, doc=doc)


class Trainer:
    """Trains one recipe into one run folder.

    Building a Trainer builds the run's parts (and, with ``resume``, loads the newest valid
    checkpoint); :meth:`fit` locks the run folder, writes the recipe, seeds the RNG and trains.

    Args:
        recipe: the validated recipe.
        run_dir: folder of this run; created under ``out`` when None. A folder that already
            holds a run is refused unless ``resume`` or ``overwrite`` is given.
        out: parent folder for new runs.
        data: prebuilt dataset splits (default: built from the recipe).
        resume: continue from the newest valid checkpoint in ``run_dir``.
        overwrite: delete the run ``run_dir`` holds and start afresh (when :meth:`fit` starts).
        progress: show a rich progress bar.
        tensorboard: write TensorBoard events when the package is installed.
        max_steps_this_call: stop (with a checkpoint) after this many steps in this call; used to
            simulate an interruption.
        readonly: write nothing into ``run_dir`` (for evaluating a finished run; prefer
            :func:`dltricks.train.evaluate.evaluate_run`).
        callbacks: :class:`Callback` objects called at step, epoch and fit end.
        console: a ``rich.console.Console`` for messages (default: a new one).

    Example:
        >>> from dltricks.train import Trainer, load_builtin_recipe
        >>> summary = Trainer(load_builtin_recipe("digits_cnn"), out="runs").fit()
        >>> summary["test"]["accuracy"]
    """

    step = _loop_field("step", "Optimizer steps done.")
    epoch = _loop_field("epoch", "Current epoch (0-based).")
    micro_in_epoch = _loop_field("micro_in_epoch", "Micro-batches of this epoch consumed.")
    best = _loop_field("best", "Best validation value of the monitored metric.")
    best_step = _loop_field("best_step", "Step of the best validation value.")
    bad_evals = _loop_field("bad_evals", "Evaluations since the last improvement.")
    skipped_steps = _loop_field("skipped_steps", "Steps skipped for NaN/Inf.")
    overflow_steps = _loop_field("overflow_steps", "fp16 steps the grad scaler skipped.")

    def __init__(
        self,
        recipe: Recipe,
        run_dir: str | Path | None = None,
        *,
        out: str | Path = "runs",
        data: DatasetSplits | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = False,
        tensorboard: bool = True,
        max_steps_this_call: int | None = None,
        readonly: bool = False,
        callbacks: list[Callback] | None = None,
        console=None,
    ) -> None:
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: resuming keeps the run "
                             "folder, overwriting deletes it.")
        self.recipe = recipe
        self.device = resolve_device(recipe.device)
        self.dist: DistInfo = init_from_env(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, quiet=not self.dist.is_main)
        self.console = console
        self.progress = progress and self.dist.is_main
        self.max_steps_this_call = max_steps_this_call
        self.callbacks = list(callbacks or [])
        self.resume, self.overwrite, self.readonly = resume, overwrite, readonly
        self.tensorboard = tensorboard

        # --- run folder: chosen and checked here, locked and written by fit()
        if self.dist.is_main:
            if run_dir is None:
                run_dir = new_run_dir(out, recipe.name)
            elif not readonly:
                check_run_folder(run_dir, resume=resume, overwrite=overwrite)
        self.run_dir = Path(broadcast_object(str(run_dir) if run_dir else None, self.dist))
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.log: MetricsLog | None = None
        self._lock: RunLock | None = None

        # --- the parts
        self.components: Components = build_components(recipe, self.device, self.dist, data,
                                                       self.run_dir)
        c = self.components
        self.data, self.objective, self.terms = c.data, c.objective, c.terms
        self.model: nn.Module = c.model
        self.ddp_model: nn.Module = c.ddp_model
        self.augment = c.augment
        self.micro_per_epoch, self.steps_per_epoch = c.micro_per_epoch, c.steps_per_epoch
        self.total_steps = c.total_steps
        self.monitor, self.monitor_mode = c.monitor, c.monitor_mode
        self.state = TrainState(c)
        takes = inspect.signature(self.model.forward).parameters
        self._forward_kwargs = {"return_exits": True} if "return_exits" in takes else {}
        self.resumed_from: Path | None = None

        self._pending: list[dict[str, Any]] = []  # per-step stats not yet summed (cheap append)
        self._stop_signal: int | None = None
        self._epoch_cache: tuple[int, Tensor] | None = None
        self._steps_this_call = 0
        self._window_t0, self._window_samples = time.perf_counter(), 0
        self._progress_info = ""
        self._last_step_ctx: StepContext | None = None
        if resume:
            self._restore()

    # ------------------------------------------------------------------ views of the parts

    optimizer = _component_field("optimizer", "The optimizer (model and terms' parameters).")
    scheduler = _component_field("scheduler", "The LR schedule, stepped once per step.")
    scaler = _component_field("scaler", "The grad scaler (enabled for fp16).")
    ema = _component_field("ema", "The EMA copy of the model, or None.")

    @property
    def train_meter(self):
        return self.state.train_meter

    @property
    def window_meter(self):
        return self.state.window_meter

    @property
    def grad_stats(self):
        return self.state.grad_stats

    @property
    def loop(self) -> LoopState:
        return self.state.loop

    def build_model(self) -> nn.Module:
        """A fresh model of the recipe, sized from the data, on the trainer's device."""
        return build_model(self.recipe, self.data, self.device)

    def _autocast(self):
        return self.components.autocast()

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights, as tensors and plain values (weights_only-loadable)."""
        self._fold_pending()
        return self.state.state_dict()

    def save_checkpoint(self, reason: str, metrics: dict[str, float] | None = None) -> Path | None:
        """Writes a checkpoint of the current step (rank 0) and prunes old ones."""
        path = None
        state = self.state_dict()  # folds pending stats on every rank
        if self.dist.is_main:
            meta = {
                "epoch": self.epoch,
                "reason": reason,
                "metrics": metrics or {},
                "version": dltricks.__version__,
                "recipe": self.recipe.name,
            }
            path = ckpt.save_checkpoint(
                self.ckpt_dir, self.step, self.model, state, meta,
                ema=self.ema.module if self.ema is not None else None,
                trainable_only=self.recipe.train.checkpoint.trainable_only,
            )
            protect = {self.best_step} if self.best_step is not None else set()
            ckpt.prune(self.ckpt_dir, self.recipe.train.checkpoint.keep_last, protect)
        barrier(self.dist)
        return path

    def _load_checkpoint(self, found: ckpt.Checkpoint) -> None:
        state = found.load_state()  # CheckpointError: fall back to the previous checkpoint
        try:
            found.load_model(self.model)
            if self.ema is not None:
                found.load_model(self.ema.module, "ema.safetensors")
            self.state.load_state_dict(state)
        except (ckpt.CheckpointError, ValueError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise ResumeError(
                f"The recipe no longer fits the checkpoint {found.path}: {msg}. Resume with the "
                f"recipe the run was trained with (its recipe.yaml); only the length of the run "
                f"and logging options may change."
            ) from None

    def _restore(self) -> None:
        got = ckpt.load_latest(self.ckpt_dir, self._load_checkpoint)
        if got is None:
            raise ckpt.CheckpointError(f"No valid checkpoint to resume from in {self.ckpt_dir}.")
        found, _ = got
        self.resumed_from = found.path

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, split: str = "val", model: nn.Module | None = None) -> dict[str, float]:
        """Metrics of ``model`` (default: the EMA weights if on, else the model) on a split.

        Under DDP each process scores a shard and the sums are all-reduced.
        """
        model = model or (self.ema.module if self.ema is not None else self.model)
        bs = self.recipe.data.eval_batch_size or self.recipe.data.batch_size
        return evaluate_model(model, self.data.split(split), self.objective, batch_size=bs,
                              device=self.device, autocast=self.components.autocast,
                              dist=self.dist)

    # ------------------------------------------------------------------ the loop's pieces

    def _epoch_indices(self) -> Tensor:
        if self._epoch_cache is None or self._epoch_cache[0] != self.epoch:
            batches = epoch_batches(len(self.data.train), self.recipe.data.batch_size,
                                    self.recipe.seed, self.epoch)
            self._epoch_cache = (self.epoch, batches)
        return self._epoch_cache[1]

    def _micro_batch(self, b: int) -> tuple[Tensor, Tensor]:
        """Micro-batch ``b`` of the current epoch: this process's contiguous share."""
        per_rank = self.recipe.data.batch_size // self.dist.world_size
        lo = self.dist.rank * per_rank
        idx = self._epoch_indices()[b, lo : lo + per_rank]
        return self.data.train.x[idx], self.data.train.y[idx]

    @property
    def micro_used_per_epoch(self) -> int:
        """Micro-batches of an epoch that take part in optimizer steps."""
        return self.steps_per_epoch * self.recipe.train.grad_accum

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Micro-batches from the current position to the end of the epoch (this rank's share)."""
        for b in range(self.micro_in_epoch, self.micro_used_per_epoch):
            yield self._micro_batch(b)

    def _forward(self, x: Tensor) -> ModelOutput:
        """The training forward; models with early exits return their exits' logits too."""
        with self._autocast():
            out = as_model_output(self.ddp_model(x, **self._forward_kwargs))
        return ModelOutput(out.logits.float(), tuple(t.float() for t in out.exit_logits),
                           out.exit_weights)

    def _exit_loss(self, out: ModelOutput, target: Tensor) -> Tensor | None:
        """``sum_i w_i * loss(exit_i logits, target)`` over the intermediate early exits the
        model returned (BranchyNet / CALM joint training), or None."""
        total = None
        for w, logits in zip(out.exit_weights, out.exit_logits, strict=True):
            if w:
                term = w * self.objective.loss(logits, target)
                total = term if total is None else total + term
        return total

    def _train_micro_batch(self) -> None:
        """Forward and backward of the next micro-batch; an optimizer step after the last
        micro-batch of an accumulation group."""
        accum = self.recipe.train.grad_accum
        micro = self.micro_in_epoch % accum
        last_micro = micro == accum - 1
        x, y = self._micro_batch(self.micro_in_epoch)
        x, y = x.to(self.device), y.to(self.device)
        if self.augment is not None:
            x, y = self.augment(x, y)
        sync = contextlib.nullcontext()
        if self.dist.enabled and not last_micro:
            sync = self.ddp_model.no_sync()
        with sync:
            out = self._forward(x)
            loss, stats = self.objective(out.logits, y, detailed=False)
            total = loss
            exit_loss = self._exit_loss(out, y)
            if exit_loss is not None:
                total = total + exit_loss
            if self.terms:
                step_ctx = StepContext(
                    model=self.model, ddp_model=self.ddp_model, x=x, y=y, outputs=out, loss=loss,
                    step=self.step, total_steps=self.total_steps, epoch=self.epoch, micro=micro,
                    device=self.device, objective=self.objective,
                    streams=self.components.streams, autocast=self.components.autocast,
                )
                n = float(y.shape[0])
                for bound in self.terms:
                    log_only = bound.weight == 0.0  # weight 0: a metric, logged, not trained on
                    with torch.no_grad() if log_only else contextlib.nullcontext():
                        for key, value in term_losses(bound, step_ctx):
                            if not log_only:
                                total = total + bound.weight * value
                            stats[f"{key}_sum"] = value.detach().float() * n
                self._last_step_ctx = step_ctx
            self.scaler.scale(total / accum if accum > 1 else total).backward()
        self._pending.append(stats)
        self.micro_in_epoch += 1
        self._window_samples += x.shape[0] * self.dist.world_size
        if last_micro:
            self._after_micro_steps()

    def _after_micro_steps(self) -> None:
        """The optimizer step and what follows it: hooks, logs, checkpoints, interruptions."""
        tc = self.recipe.train
        lr = self.optimizer.param_groups[0]["lr"]
        self._optimizer_step()
        self._steps_this_call += 1
        if self._last_step_ctx is not None:
            self._last_step_ctx.step = self.step
            for bound in self.terms:
                bound.term.on_step_end(self._last_step_ctx)
            self._last_step_ctx = None
        for cb in self.callbacks:
            cb.on_step_end(self)
        if self.step % tc.log_every_steps == 0 or self.step == self.total_steps:
            rate = self._window_samples / max(time.perf_counter() - self._window_t0, 1e-9)
            rec = self._log_train(lr, rate)
            self._window_t0, self._window_samples = time.perf_counter(), 0
            self._progress_info = (f"loss {rec.get('loss', float('nan')):.4f} lr {lr:.2e} "
                                   f"{rate:,.0f} samples/s")
        every = tc.checkpoint.every_steps
        if every and self.step % every == 0:
            self.save_checkpoint("every_steps")
        if self._stop_signal is not None:
            path = self.save_checkpoint(f"signal {self._stop_signal}")
            raise TrainingInterrupted(self._stop_signal, path)
        if self.max_steps_this_call and self._steps_this_call >= self.max_steps_this_call:
            path = self.save_checkpoint("max_steps_this_call")
            raise TrainingInterrupted(0, path)

    def _optimizer_step(self) -> None:
        tc = self.recipe.train
        c = self.components
        if self.dist.enabled and c.term_params:  # DDP syncs the model only, not the terms' modules
            for p in c.term_params:
                if p.grad is not None:
                    all_reduce_sum(p.grad, self.dist).div_(self.dist.world_size)
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        params = [p for p in c.params if p.grad is not None]
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

    # ------------------------------------------------------------------ run folder

    @contextlib.contextmanager
    def _run_folder(self):
        """Locks the run folder (rank 0) for the duration of :meth:`fit` and prepares it."""
        if self.readonly:
            raise ValueError("A readonly Trainer cannot fit; it writes nothing into its folder.")
        if self.dist.is_main:
            make_dir(self.run_dir, "run folder")
            self._lock = RunLock(self.run_dir)
            self._lock.acquire()
        try:
            if self.dist.is_main:
                # checked again under the lock: another process may have trained here meanwhile
                check_run_folder(self.run_dir, resume=self.resume, overwrite=self.overwrite)
                if self.overwrite:
                    clear_run_folder(self.run_dir)
            barrier(self.dist)
            yield
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _finished_summary(self) -> dict[str, Any] | None:
        """The stored summary of a resumed run that had already finished, else None."""
        path = self.run_dir / "summary.json"
        if not (self.resume and path.is_file()):
            return None
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        done = self.step >= self.total_steps or self.loop.stopped_early
        if summary.get("steps") == self.step and done:
            return summary
        return None

    def _open_log(self) -> None:
        if not self.dist.is_main:
            return
        if self.resume:
            self.log = MetricsLog(self.run_dir, self.tensorboard, purge_step=self.step)
            dropped = self.log.truncate_after(self.step)
            (self.run_dir / "summary.json").unlink(missing_ok=True)  # the run goes on
            name = self.resumed_from.name if self.resumed_from else "checkpoint"
            self.console.print(f"Resumed from {name} (step {self.step}, epoch {self.epoch}); "
                               f"dropped {dropped} log records written after it.")
        else:
            self.log = MetricsLog(self.run_dir, self.tensorboard)
        atomic_write_text(self.run_dir / "recipe.yaml", self.recipe.to_yaml())

    # ------------------------------------------------------------------ fit

    def fit(self) -> dict[str, Any]:
        """Trains to the end of the recipe (or early stopping) and returns the summary.

        Locks the run folder, writes the resolved recipe, seeds the global RNG (or restores the
        checkpoint's) and runs the loop. A resumed run that had already finished returns its
        stored summary and writes nothing. With ``train.deterministic`` PyTorch's deterministic
        algorithms are switched on for the duration of the call and the previous setting is
        restored afterwards.

        Raises:
            RunFolderError: the folder is locked by another process or holds another run.
            TrainingOutOfMemory: the device ran out of memory (the message suggests a smaller
                ``data.batch_size``).
            NonFiniteError, TrainingInterrupted: see their docstrings.
        """
        with self._run_folder():
            finished = self._finished_summary()
            if finished is not None:
                self.console.print(f"{self.run_dir} has already finished (step {self.step}); "
                                   "nothing to do.")
                return finished
            self._open_log()
            previous = torch.are_deterministic_algorithms_enabled()
            previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
            if self.recipe.train.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                self.state.apply_rng(self.recipe.seed)
                return self._fit()
            except (RuntimeError, MemoryError) as exc:
                if not _is_oom(exc):
                    raise
                bs = self.recipe.data.batch_size
                raise TrainingOutOfMemory(
                    f"Out of memory on {self.device} at step {self.step + 1} with "
                    f"data.batch_size={bs}; try a smaller batch, e.g. "
                    f"data.batch_size={max(bs // 2, 1)} "
                    f"(with train.grad_accum={2 * self.recipe.train.grad_accum} to keep the "
                    f"effective batch), a smaller model, or train.precision=bf16."
                ) from None
            finally:
                torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
                if self.log is not None:
                    self.log.close()
                    self.log = None

    def _fit(self) -> dict[str, Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.ddp_model.train()
        for bound in self.terms:
            for m in bound.term.trainable_modules().values():
                m.train()
        if self.ema is not None:
            self.ema.module.train()
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=not self.progress, transient=False,
        )
        self._steps_this_call = 0
        self._window_t0, self._window_samples = time.perf_counter(), 0
        self._progress_info = ""
        with self._catch_signals(), progress:
            task = progress.add_task(self.recipe.name, total=self.total_steps,
                                     completed=self.step, info="")
            while self.step < self.total_steps and not self.loop.stopped_early:
                if self.micro_in_epoch >= self.micro_used_per_epoch:
                    self.loop.stopped_early = self._end_epoch()
                else:
                    self._train_micro_batch()
                    progress.update(task, completed=self.step, info=self._progress_info)
            progress.update(task, completed=self.step)
        if self.step >= self.total_steps and self.micro_in_epoch:
            self._end_epoch(final=True)
        return self._finish(self.loop.stopped_early)

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

    @staticmethod
    def _term_metrics(sums: dict[str, Tensor]) -> dict[str, float]:
        count = sums.get("loss_count")
        if count is None or float(count) <= 0:
            return {}
        return {k[: -len("_sum")]: float(v) / float(count) for k, v in sorted(sums.items())
                if k.startswith("term/") and k.endswith("_sum")}

    def _log_train(self, lr: float, rate: float) -> dict[str, Any]:
        self._flush_window()
        rec = {"split": "train", "step": self.step, "epoch": self.epoch, "lr": lr,
               "samples_per_s": rate, **self.window_meter.compute(),
               **self._term_metrics(self.window_meter.sums)}
        if len(self.grad_stats):
            rec["grad_norm"] = self.grad_stats.norms[-1]
        self.window_meter.reset()
        if self.log is not None:
            self.log.write(rec)
        return rec

    def _end_epoch(self, final: bool = False) -> bool:
        """Evaluates, checkpoints, moves to the next epoch; returns True to stop early.

        The checkpoint is written every ``train.checkpoint.every_epochs`` epochs and always at
        the last epoch, on early stopping and when the monitored metric improved.
        """
        tc = self.recipe.train
        epoch_done = self.epoch + 1
        metrics: dict[str, float] = {}
        stop = False
        self._flush_window()
        self.window_meter.reset()
        improved = False
        if final or epoch_done % tc.eval_every_epochs == 0 or self.step >= self.total_steps:
            metrics = self.evaluate("val")
            if self.log is not None:
                train_metrics = {**self.train_meter.compute(),
                                 **self._term_metrics(self.train_meter.sums)}
                self.log.write({"split": "train_epoch", "step": self.step, "epoch": self.epoch,
                                **train_metrics})
                self.log.write({"split": "val", "step": self.step, "epoch": self.epoch,
                                **metrics})
            best_before = self.best_step
            stop = self._update_best(metrics)
            improved = self.best_step != best_before
        self.train_meter.reset()
        self.epoch += 1
        self.micro_in_epoch = 0
        self.loop.stopped_early = stop
        last = final or stop or self.step >= self.total_steps
        if last or improved or epoch_done % tc.checkpoint.every_epochs == 0:
            # the last epoch's checkpoint is the run's result and the best one is kept for the
            # summary and `dltricks eval`; a skipped epoch is replayed exactly on resume
            self.save_checkpoint("epoch_end", metrics)
        for cb in self.callbacks:
            cb.on_epoch_end(self, metrics)
        return stop

    def _update_best(self, metrics: dict[str, float]) -> bool:
        if self.monitor not in metrics:
            raise ValueError(
                f"train.monitor {self.monitor!r} is not among the validation metrics "
                f"({', '.join(sorted(metrics)) or 'none: the validation split gave no scores'})."
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
            model = copy.deepcopy(self.model)  # the same structure, terms' wrappers included
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
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        for cb in self.callbacks:
            cb.on_fit_end(self, summary)
        return summary


__all__ = [
    "LOWER_IS_BETTER",
    "Callback",
    "NonFiniteError",
    "ResumeError",
    "RunFolderError",
    "Trainer",
    "TrainingInterrupted",
    "TrainingOutOfMemory",
    "checkpoint_weights_file",
    "epoch_batches",
    "model_kwargs_for",
    "monitor_spec",
    "resolve_device",
]
