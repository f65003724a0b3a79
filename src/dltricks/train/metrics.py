"""Evaluation metrics as sums, so they can be all-reduced across processes and checkpointed.

Every metric here is a ratio of sums. Per batch, a ``*_stats`` function returns a dict of float64
sum tensors; a :class:`MetricAccumulator` adds them up (on the batch's device, without a host
sync), merges with other accumulators or all-reduces as one flat vector, saves into a checkpoint,
and :func:`summarize` turns the sums into numbers. Because only sums are kept, a metric streamed
over many batches (and processes) equals the metric of the concatenated data.

- Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks"):
  ``M`` equal-width confidence bins ``((m-1)/M, m/M]``;
  ``ECE = sum_m |B_m|/N * |acc(B_m) - conf(B_m)| = sum_m |sum_acc_m - sum_conf_m| / N``.
- Dice (Dice 1945; Milletari et al. 2016) of hard predictions per class,
  ``2 |P ∩ G| / (|P| + |G|)``, accumulated over the whole dataset (global, "micro" Dice per
  class), then averaged over the foreground classes present.

Stat names (all float64 sums):

- ``classification_stats``: ``correct``, ``count``, ``nll_sum``, ``ece_conf`` [M], ``ece_acc`` [M],
  ``ece_count`` [M];
- ``segmentation_stats``: ``dice_inter`` [K], ``dice_denom`` [K] (all classes, background
  included; :func:`summarize` reports foreground classes 1..K-1);
- ``token_stats``: ``token_correct``, ``token_count``, ``token_nll_sum``;
- the caller's loss: ``loss_sum`` (loss times batch size) and ``loss_count``.

Axis letters: N samples, B batch, K classes, L sequence positions, V vocabulary, M bins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


# --------------------------------------------------------------------------- accumulator


class MetricAccumulator:
    """Named float64 sum tensors that add up over batches.

    Example::

        acc = MetricAccumulator()
        for x, y in loader:
            logits = model(x)
            acc.update_dict(classification_stats(logits, y))
            acc.update("loss_sum", loss.detach() * len(y)); acc.update("loss_count", len(y))
        if distributed:
            vec = acc.as_vector(); dist.all_reduce(vec); acc.from_vector(vec)
        metrics = acc.compute()  # {'accuracy': ..., 'nll': ..., 'ece': ..., 'loss': ...}
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}

    def update(self, name: str, value: Tensor | float) -> None:
        """Adds ``value`` (a number or a tensor of fixed shape) to the sum called ``name``."""
        value = torch.as_tensor(value).detach().to(torch.float64)
        if name not in self.sums:
            self.sums[name] = value.clone()
            return
        if self.sums[name].shape != value.shape:
            raise ValueError(
                f"Metric {name!r} has shape {tuple(self.sums[name].shape)}, cannot add a value "
                f"of shape {tuple(value.shape)}."
            )
        self.sums[name] += value.to(self.sums[name].device)

    def update_dict(self, stats: Mapping[str, Tensor | float]) -> None:
        """Adds every entry of a ``*_stats`` dict."""
        for name, value in stats.items():
            self.update(name, value)

    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        """Adds the sums of ``other`` into this accumulator and returns it."""
        self.update_dict(other.sums)
        return self

    def reset(self) -> None:
        self.sums.clear()

    def names(self) -> list[str]:
        """Stat names in the fixed (sorted) order used by :meth:`as_vector`."""
        return sorted(self.sums)

    def as_vector(self) -> Tensor:
        """All sums flattened into one float64 vector (sorted by name), for one ``all_reduce``.

        Every process must hold the same names and shapes; update all stats on every process
        (a process with no data adds zeros).
        """
        if not self.sums:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([self.sums[n].reshape(-1) for n in self.names()])

    def from_vector(self, vector: Tensor) -> None:
        """Writes a vector laid out as by :meth:`as_vector` back into the sums."""
        numel = sum(t.numel() for t in self.sums.values())
        if vector.ndim != 1 or vector.numel() != numel:
            raise ValueError(
                f"Expected a vector of {numel} values (the layout of as_vector), got shape "
                f"{tuple(vector.shape)}."
            )
        offset = 0
        for n in self.names():
            t = self.sums[n]
            self.sums[n] = vector[offset : offset + t.numel()].reshape(t.shape).to(t).clone()
            offset += t.numel()

    def state_dict(self) -> dict[str, Tensor]:
        """Plain dict of CPU tensors (``torch.load(weights_only=True)``-safe)."""
        return {n: t.detach().cpu().clone() for n, t in self.sums.items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.sums = {n: torch.as_tensor(t, dtype=torch.float64).clone() for n, t in state.items()}

    def compute(self) -> dict[str, float]:
        """The metrics of the accumulated sums; see :func:`summarize`."""
        return summarize(self.sums)


# --------------------------------------------------------------------------- per-batch stats


def _bin_index(conf: Tensor, n_bins: int) -> Tensor:
    """Index of the bin ``((m-1)/M, m/M]`` holding each confidence; 0 goes to the first bin."""
    return (conf * n_bins).ceil().long().sub(1).clamp(0, n_bins - 1)


def _ece_sums(conf: Tensor, correct: Tensor, n_bins: int) -> dict[str, Tensor]:
    idx = _bin_index(conf, n_bins)
    zeros = torch.zeros(n_bins, dtype=torch.float64, device=conf.device)
    return {
        "ece_conf": zeros.index_add(0, idx, conf.double()),
        "ece_acc": zeros.index_add(0, idx, correct.double()),
        "ece_count": zeros.index_add(0, idx, torch.ones_like(conf, dtype=torch.float64)),
    }


def _flatten_classes(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(B, K, *) logits and (B, *) or (B, K, *) targets to (N, K) and (N,) or (N, K)."""
    if logits.ndim > 2:
        k = logits.shape[1]
        logits = logits.movedim(1, -1).reshape(-1, k)
        soft = target.is_floating_point()
        target = target.movedim(1, -1).reshape(-1, k) if soft else target.reshape(-1)
    return logits, target


def classification_stats(logits: Tensor, target: Tensor, n_bins: int = 15) -> dict[str, Tensor]:
    """Sums for accuracy, NLL and ECE of one batch.

    Args:
        logits: (B, K) scores (or (B, K, *) with per-position labels).
        target: (B,) class indices, or (B, K) probabilities (mixup), whose argmax counts as the
            label for accuracy and calibration.
        n_bins: number of ECE bins M.

    Returns:
        ``correct``, ``count``, ``nll_sum`` (0-d) and ``ece_conf``, ``ece_acc``, ``ece_count``
        (M,), all float64.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    logits, target = _flatten_classes(logits.detach(), target.detach())
    logp = logits.float().log_softmax(dim=-1)
    nll = F.cross_entropy(logp, target, reduction="sum")
    labels = target.argmax(-1) if target.is_floating_point() else target
    conf, pred = logp.exp().max(dim=-1)
    correct = (pred == labels).double()
    return {
        "correct": correct.sum(),
        "count": torch.tensor(float(labels.numel()), dtype=torch.float64, device=logits.device),
        "nll_sum": nll.double(),
        **_ece_sums(conf, correct, n_bins),
    }


def segmentation_stats(logits: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-class intersection and ``|P| + |G|`` sums of the argmax prediction, for Dice.

    Args:
        logits: (B, K, *spatial) scores, K >= 2 (class 0 is the background).
        target: (B, *spatial) integer labels.

    Returns:
        ``dice_inter`` and ``dice_denom``, each (K,) float64.
    """
    if logits.ndim < 3 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"segmentation_stats needs logits (B, K, *spatial) and target (B, *spatial), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}."
        )
    pred = logits.detach().argmax(dim=1)
    inter, denom = _dice_sums(pred, target, logits.shape[1])
    return {"dice_inter": inter, "dice_denom": denom}


def _dice_sums(pred: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if num_classes < 2:
        raise ValueError(f"Dice needs num_classes >= 2 (background + 1), got {num_classes}.")
    counts = [
        torch.bincount(x, minlength=num_classes) for x in (pred[pred == target], pred, target)
    ]
    if any(c.numel() > num_classes for c in counts):
        raise ValueError(f"Labels must lie in [0, {num_classes}).")
    inter, n_pred, n_true = (c.double() for c in counts)
    return inter, n_pred + n_true


def token_stats(logits: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Sums for token accuracy and NLL over positions whose target is not -100.

    Args:
        logits: (B, L, V) scores.
        target: (B, L) token indices, -100 where there is no target.

    Returns:
        ``token_correct``, ``token_count``, ``token_nll_sum``, 0-d float64.
    """
    if logits.ndim != 3 or target.shape != logits.shape[:2]:
        raise ValueError(
            f"token_stats needs logits (B, L, V) and target (B, L), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}."
        )
    logits, target = logits.detach().reshape(-1, logits.shape[-1]), target.reshape(-1)
    mask = target != IGNORE_INDEX
    nll = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return {
        "token_correct": ((logits.argmax(-1) == target) & mask).sum().double(),
        "token_count": mask.sum().double(),
        "token_nll_sum": nll.double(),
    }


def summarize(stats: Mapping[str, Tensor]) -> dict[str, float]:
    """Turns accumulated sums into metrics.

    Gives whichever applies: ``loss``, ``accuracy``, ``nll``, ``ece``, ``confidence`` (mean
    top-1 probability), ``dice`` (mean over
    foreground classes that occur in prediction or target) with ``dice_class{k}`` per class,
    ``token_accuracy``, ``token_nll`` and ``perplexity``. A metric whose count is zero is left
    out.
    """
    s = {n: torch.as_tensor(t).detach().double().cpu() for n, t in stats.items()}
    out: dict[str, float] = {}

    def ratio(key: str, num: str, den: str) -> None:
        if num in s and den in s and s[den].item() > 0:
            out[key] = (s[num] / s[den]).item()

    ratio("loss", "loss_sum", "loss_count")
    ratio("accuracy", "correct", "count")
    ratio("nll", "nll_sum", "count")
    if "ece_count" in s and s["ece_count"].sum() > 0:
        out["ece"] = ((s["ece_acc"] - s["ece_conf"]).abs().sum() / s["ece_count"].sum()).item()
        # mean top-1 probability: above accuracy = over-confident (label smoothing's premise)
        out["confidence"] = (s["ece_conf"].sum() / s["ece_count"].sum()).item()
    if "dice_inter" in s:
        inter, denom = s["dice_inter"][1:], s["dice_denom"][1:]
        present = denom > 0
        if present.any():
            dice = 2 * inter / denom
            out["dice"] = dice[present].mean().item()
            for k in range(len(dice)):
                if present[k]:
                    out[f"dice_class{k + 1}"] = dice[k].item()
    ratio("token_accuracy", "token_correct", "token_count")
    ratio("token_nll", "token_nll_sum", "token_count")
    if "token_nll" in out:
        out["perplexity"] = math.exp(min(out["token_nll"], 700.0))
    return out


# --------------------------------------------------------------------------- stand-alone metrics


def accuracy(logits: Tensor, target: Tensor) -> float:
    """Top-1 accuracy of (B, K) scores against (B,) labels or (B, K) probabilities."""
    labels = target.argmax(-1) if target.is_floating_point() else target
    if logits.shape[:1] != labels.shape or logits.ndim != 2:
        raise ValueError(
            f"accuracy needs logits (B, K) and target (B,) or (B, K), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}."
        )
    return (logits.argmax(-1) == labels).double().mean().item()


def _check_probs(probs: Tensor, target: Tensor, n_bins: int) -> None:
    if probs.ndim != 2 or target.shape != probs.shape[:1]:
        raise ValueError(
            f"Calibration needs probs (N, K) and target (N,), got {tuple(probs.shape)} and "
            f"{tuple(target.shape)}."
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")


def reliability_bins(probs: Tensor, target: Tensor, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per-bin statistics for a reliability diagram (Guo et al. 2017, fig. 1).

    Args:
        probs: (N, K) predicted probabilities.
        target: (N,) class indices.
        n_bins: number of equal-width confidence bins M over (0, 1].

    Returns:
        ``lower``, ``upper`` (bin edges), ``confidence`` and ``accuracy`` (means within a bin,
        NaN for empty bins) and ``count``, each an (M,) array.
    """
    _check_probs(probs, target, n_bins)
    conf, pred = probs.detach().double().max(dim=-1)
    sums = _ece_sums(conf, (pred == target).double(), n_bins)
    count = sums["ece_count"].cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, sums["ece_conf"].cpu().numpy() / count, np.nan)
        mean_acc = np.where(count > 0, sums["ece_acc"].cpu().numpy() / count, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "confidence": mean_conf,
        "accuracy": mean_acc,
        "count": count,
    }


def expected_calibration_error(probs: Tensor, target: Tensor, n_bins: int = 15) -> float:
    """ECE of (N, K) probabilities against (N,) labels with M equal-width bins (Guo et al. 2017).

    ``sum_m |B_m| / N * |acc(B_m) - conf(B_m)|`` with bins ``((m-1)/M, m/M]``.
    """
    _check_probs(probs, target, n_bins)
    if probs.shape[0] == 0:
        raise ValueError("expected_calibration_error needs at least one sample.")
    conf, pred = probs.detach().double().max(dim=-1)
    sums = _ece_sums(conf, (pred == target).double(), n_bins)
    return ((sums["ece_acc"] - sums["ece_conf"]).abs().sum() / probs.shape[0]).item()


def dice_score(
    pred_labels: Tensor, target: Tensor, num_classes: int, include_background: bool = False
) -> Tensor:
    """Per-class Dice ``2 |P ∩ G| / (|P| + |G|)`` of hard labels, over the whole batch.

    Args:
        pred_labels: (B, *spatial) predicted labels.
        target: (B, *spatial) true labels.
        num_classes: K.
        include_background: also score class 0.

    Returns:
        (K,) or, without background, (K - 1,) float64 tensor; NaN for a class absent from both
        prediction and target. ``.nanmean()`` gives the mean Dice.
    """
    if pred_labels.shape != target.shape:
        raise ValueError(
            f"pred_labels and target must have the same shape, got {tuple(pred_labels.shape)} "
            f"and {tuple(target.shape)}."
        )
    inter, denom = _dice_sums(pred_labels, target, num_classes)
    dice = torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.nan)
    return dice if include_background else dice[1:]
