"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks").

The learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``num_steps`` steps of
real training; the loss is smoothed with an exponential moving average (bias-corrected) and the
test stops once it exceeds ``diverge_factor`` times the best loss seen. The suggestion is the
learning rate at the steepest descent of the smoothed loss, a common reading of the curve; the
loss minimum divided by ten is reported too. The model, optimizer and RNG are restored afterwards.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dltricks.train.trainer import Trainer


@dataclass
class LRFindResult:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed
    suggestion: float | None = None
    min_loss_lr: float | None = None

    def plot(self, path: str | Path) -> Path:
        """Writes the loss-vs-LR curve with the suggestion marked (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        if self.suggestion:
            ax.axvline(self.suggestion, color="C3", ls="--",
                       label=f"steepest descent: {self.suggestion:.2e}")
        if self.min_loss_lr:
            ax.axvline(self.min_loss_lr / 10, color="C2", ls=":",
                       label=f"min-loss LR / 10: {self.min_loss_lr / 10:.2e}")
        ax.legend()
        ax.set_title("LR range test")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Path(path)


def lr_find(
    trainer: Trainer,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    num_steps: int = 100,
    smoothing: float = 0.9,
    diverge_factor: float = 4.0,
) -> LRFindResult:
    """Runs the range test with the trainer's model, data, optimizer and tricks.

    Args:
        trainer: a freshly built :class:`Trainer`; its state is restored afterwards.
        min_lr, max_lr: ends of the exponential sweep.
        num_steps: optimizer steps in the sweep (data cycles through epochs as needed).
        smoothing: EMA factor for the loss curve.
        diverge_factor: stop when the smoothed loss exceeds this multiple of the best.
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(f"Need 0 < min_lr < max_lr, got {min_lr} and {max_lr}.")
    if num_steps < 5:
        raise ValueError(f"num_steps must be at least 5, got {num_steps}.")
    model_state = copy.deepcopy(trainer.model.state_dict())
    opt_state = copy.deepcopy(trainer.optimizer.state_dict())
    rng = torch.get_rng_state()
    result = LRFindResult()
    gamma = (max_lr / min_lr) ** (1 / (num_steps - 1))
    avg, best = 0.0, math.inf
    model, objective = trainer.ddp_model, trainer.objective
    model.train()
    step, epoch = 0, 0
    try:
        while step < num_steps:
            trainer.epoch, trainer.micro_in_epoch = epoch, 0
            for x, y in trainer._batches():
                lr = min_lr * gamma**step
                for g in trainer.optimizer.param_groups:
                    g["lr"] = lr
                x, y = x.to(trainer.device), y.to(trainer.device)
                if trainer.augment is not None:
                    x, y = trainer.augment(x, y)
                with trainer._autocast():
                    logits = model(x)
                loss, _ = objective(logits.float(), y)
                trainer.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                trainer.optimizer.step()
                value = float(loss.detach())
                avg = smoothing * avg + (1 - smoothing) * value
                smoothed = avg / (1 - smoothing ** (step + 1))
                step += 1
                if not math.isfinite(smoothed) or smoothed > diverge_factor * best:
                    step = num_steps
                    break
                best = min(best, smoothed)
                result.lrs.append(lr)
                result.losses.append(smoothed)
                if step >= num_steps:
                    break
            epoch += 1
    finally:
        trainer.model.load_state_dict(model_state)
        trainer.optimizer.load_state_dict(opt_state)
        trainer.scheduler.last_epoch = 0
        for g, base in zip(trainer.optimizer.param_groups, trainer.scheduler.base_lrs,
                           strict=True):
            g["lr"] = base
        torch.set_rng_state(rng)
        trainer.epoch, trainer.micro_in_epoch = 0, 0
    if len(result.losses) >= 3:
        logs = [math.log10(v) for v in result.lrs]
        slopes = [
            (result.losses[i + 1] - result.losses[i - 1]) / (logs[i + 1] - logs[i - 1])
            for i in range(1, len(result.losses) - 1)
        ]
        result.suggestion = result.lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]
        result.min_loss_lr = result.lrs[min(range(len(result.losses)),
                                            key=result.losses.__getitem__)]
    return result
