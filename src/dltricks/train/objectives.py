"""Objectives: what a batch's loss and metrics are, per task, so one training loop serves all.

An objective turns model outputs and targets into a loss and into *sum statistics* (counts,
correct predictions, calibration bins, Dice overlaps). Sums can be added across batches, saved
in a checkpoint and all-reduced across processes, and only turned into rates at the end
(:func:`dltricks.train.metrics.summarize`). Later paradigms (distillation, semi-supervised, ...)
subclass :class:`Objective` instead of copying the loop.

Axis letters: B batch, K classes, L sequence length.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dltricks.train import losses, metrics


class Objective:
    """Base class: ``__call__(logits, target) -> (loss, stats)``."""

    task: ClassVar[str] = ""
    #: validation metric watched by default for best checkpoint / early stopping
    default_monitor: ClassVar[str] = "loss"
    #: metrics its evaluation reports (per-class Dice entries aside)
    metric_names: ClassVar[tuple[str, ...]] = ("loss",)

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def __call__(
        self, logits: Tensor, target: Tensor, detailed: bool = True
    ) -> tuple[Tensor, dict[str, Tensor | float]]:
        """Loss and sum statistics of one batch.

        Args:
            logits: model outputs.
            target: targets of the task.
            detailed: all metrics (evaluation); False keeps only the cheap ones for training
                steps, where calibration bins would cost a noticeable share of a small step.
        """
        loss = self.loss(logits, target)
        with torch.no_grad():
            logits = logits.detach().float()
            stats = self.stats(logits, target) if detailed else self.train_stats(logits, target)
            n = float(target.shape[0])
            stats["loss_sum"] = loss.detach() * n
            stats["loss_count"] = n
        return loss, stats

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def stats(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def train_stats(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """The statistics logged during training (default: the full ones)."""
        return self.stats(logits, target)


class ClassificationObjective(Objective):
    """Cross-entropy with label smoothing; accuracy, NLL and ECE.

    Targets are class indices (B,) or, with mixup/cutmix, probabilities (B, K).
    """

    task = "classification"
    default_monitor = "accuracy"
    metric_names = ("loss", "accuracy", "nll", "ece")

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return losses.classification_loss(logits, target, self.label_smoothing)

    def stats(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        if target.is_floating_point():  # soft targets: score against the dominant class
            target = target.argmax(dim=1)
        return metrics.classification_stats(logits, target)

    def train_stats(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        labels = target.argmax(dim=1) if target.is_floating_point() else target
        return {"correct": (logits.argmax(dim=1) == labels).sum(), "count": float(labels.numel())}


class SegmentationObjective(Objective):
    """Dice + cross-entropy (Milletari et al. 2016); foreground Dice."""

    task = "segmentation"
    default_monitor = "dice"
    metric_names = ("loss", "dice")

    def __init__(self, label_smoothing: float = 0.0, dice_weight: float = 1.0) -> None:
        super().__init__(label_smoothing)
        self.dice_weight = dice_weight

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return losses.dice_ce_loss(
            logits, target, dice_weight=self.dice_weight, label_smoothing=self.label_smoothing
        )

    def stats(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return metrics.segmentation_stats(logits, target)


class SequenceObjective(Objective):
    """Per-token cross-entropy over scored positions (target != -100); token accuracy."""

    task = "sequence"
    default_monitor = "token_accuracy"
    metric_names = ("loss", "token_accuracy", "token_nll", "perplexity")

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return losses.sequence_loss(logits, target, self.label_smoothing)

    def stats(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return metrics.token_stats(logits, target)


OBJECTIVES: dict[str, type[Objective]] = {
    c.task: c for c in (ClassificationObjective, SegmentationObjective, SequenceObjective)
}


def make_objective(task: str, label_smoothing: float = 0.0, dice_weight: float = 1.0) -> Objective:
    """The objective for a dataset's task."""
    if task not in OBJECTIVES:
        raise ValueError(f"No objective for task {task!r}; known: {', '.join(OBJECTIVES)}.")
    if task == "segmentation":
        return SegmentationObjective(label_smoothing, dice_weight)
    return OBJECTIVES[task](label_smoothing)
