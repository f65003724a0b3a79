"""Unsupervised domain adaptation: labelled source data, unlabelled target data.

Both terms draw from the dataset's ``"target"`` stream (``domain_shift`` with ``role: adapt``:
transformed digits or shifted MNIST-1D) and are scored on the target's test split.

* :class:`DANN` (Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016): a
  domain discriminator learns to tell source from target features, and a **gradient reversal
  layer** between the features and the discriminator (identity forward, ``-lambda * grad``
  backward) trains the feature extractor to make the domains indistinguishable. ``lambda``
  follows the paper's schedule ``2 / (1 + exp(-10 p)) - 1`` over the training progress p.
  The features are the input of the model's head (any layer by name). The paper's annealed
  learning rate is left to the recipe's schedule.
* :class:`SelfTraining`: self-training on the target with class-balanced pseudo-labels (Zou et
  al., "Unsupervised Domain Adaptation for Semantic Segmentation via Class-Balanced
  Self-Training", ECCV 2018): after training on the source for a while, the whole target set
  is labelled by the current model in rounds; in each class only the most confident share
  ``p`` of the samples predicted as that class is kept (so easy classes cannot take over), and
  ``p`` grows from round to round (a curriculum). Between rounds the model trains on the kept
  target samples with their pseudo-labels beside the source batches.

Axis letters: B batch, F features, K classes, N target samples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dltricks.train.terms import LossTerm, StepContext, TermContext

# --------------------------------------------------------------------------- gradient reversal


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, lambd: float) -> Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambd * grad, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lambd`` in the backward pass
    (Ganin & Lempitsky 2015)."""
    if lambd < 0:
        raise ValueError(f"lambda must be non-negative, got {lambd}.")
    return _GradReverse.apply(x, float(lambd))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse` with a settable ``lambd``."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambd)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule ``2 / (1 + exp(-gamma p)) - 1``: 0 at p = 0, towards 1 at p = 1."""
    p = min(1.0, max(0.0, progress))
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def domain_discriminator(in_features: int, hidden: int = 64) -> nn.Sequential:
    """Source-vs-target classifier on features: two hidden ReLU layers, one logit (target = 1)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, 1))


class _InputCapture:
    """Forward pre-hook keeping the latest input of a module (its features)."""

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.value = args[0]


def _target_stream(ctx: TermContext, who: str) -> Tensor:
    from dltricks.data.domains import get_stream

    return get_stream(ctx.data, "target", f"objective {who!r}").x


# --------------------------------------------------------------------------- DANN


class DANN(LossTerm):
    """Domain-adversarial training with a gradient reversal layer (Ganin et al. 2016).

    Args:
        feature_layer: the module whose **input** are the features (default: the head).
        hidden: width of the discriminator's hidden layers.
        lambda_max: the reversal strength is ``lambda_max * dann_lambda(progress, gamma)``.
        gamma: steepness of the schedule (the paper: 10).
        batch_size: target samples per step (default: the recipe's batch size).
    """

    def __init__(self, feature_layer: str = "head", hidden: int = 64, lambda_max: float = 1.0,
                 gamma: float = 10.0, batch_size: int | None = None) -> None:
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}.")
        if lambda_max < 0 or gamma < 0:
            raise ValueError("lambda_max and gamma must be non-negative.")
        self.feature_layer, self.hidden = feature_layer, hidden
        self.lambda_max, self.gamma, self.batch_size = lambda_max, gamma, batch_size
        self.discriminator: nn.Module | None = None
        self._cap = _InputCapture()

    def setup(self, ctx: TermContext) -> None:
        xt = _target_stream(ctx, "dann")
        ctx.add_stream("target", xt, None, self.batch_size)
        modules = dict(ctx.model.named_modules())
        if self.feature_layer not in modules:
            raise ValueError(f"feature_layer {self.feature_layer!r} is not a module of the model; "
                             f"modules include: {', '.join(n for n in list(modules)[1:30])}.")
        modules[self.feature_layer].register_forward_pre_hook(self._cap)
        was = ctx.model.training
        ctx.model.eval()  # dry run for the feature size; no statistics change
        with torch.no_grad():
            ctx.model(ctx.data.train.x[:2].to(ctx.device))
        ctx.model.train(was)
        assert self._cap.value is not None
        feats = self._cap.value.flatten(1).shape[1]
        self.discriminator = domain_discriminator(feats, self.hidden).to(ctx.device)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator} if self.discriminator is not None else {}

    def lambd(self, progress: float) -> float:
        return self.lambda_max * dann_lambda(progress, self.gamma)

    def __call__(self, step: StepContext) -> Tensor:
        assert self.discriminator is not None, "setup() was not called"
        src = self._cap.value  # features of the labelled batch, from the loop's forward
        if src is None or src.shape[0] != step.x.shape[0]:
            raise RuntimeError("DANN reads the source features of the loop's forward; list it "
                               "before objectives that run forwards of their own.")
        xt, _ = step.batch("target")
        step.forward(xt)
        tgt = self._cap.value
        feats = torch.cat([src.flatten(1), tgt.flatten(1)]).float()  # (2B, F)
        domain = torch.cat([torch.zeros(len(src)), torch.ones(len(tgt))]).to(feats.device)
        logits = self.discriminator(grad_reverse(feats, self.lambd(step.progress))).squeeze(1)
        return F.binary_cross_entropy_with_logits(logits, domain)


# --------------------------------------------------------------------------- self-training


def class_balanced_selection(probs: Tensor, fraction: float) -> tuple[Tensor, Tensor]:
    """Pseudo-labels keeping, in each predicted class, its most confident ``fraction``.

    Args:
        probs: (N, K) class probabilities.
        fraction: share of each predicted class to keep, in (0, 1].

    Returns:
        (labels long (N,), mask bool (N,)); at least one sample per predicted class is kept.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    conf, labels = probs.max(-1)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        k = max(1, math.ceil(fraction * len(idx)))
        top = idx[conf[idx].argsort(descending=True)[:k]]
        mask[top] = True
    return labels, mask


class SelfTraining(LossTerm):
    """Class-balanced self-training on the target domain (Zou et al. 2018).

    Args:
        start: fraction of the run trained on the source alone before the first round.
        rounds: pseudo-labelling rounds, spread evenly over the rest of the run.
        fraction: (first, last) share of each predicted class kept, growing linearly over the
            rounds.
        batch_size: target samples per step (default: the recipe's batch size).
        eval_batch_size: samples per forward when labelling the target set.
    """

    def __init__(self, start: float = 0.3, rounds: int = 3,
                 fraction: tuple[float, float] = (0.2, 0.6), batch_size: int | None = None,
                 eval_batch_size: int = 512) -> None:
        if not 0.0 <= start < 1.0:
            raise ValueError(f"start must be in [0, 1), got {start}.")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}.")
        if not 0.0 < fraction[0] <= fraction[1] <= 1.0:
            raise ValueError(f"fraction must be (first, last) with 0 < first <= last <= 1, "
                             f"got {fraction}.")
        self.start, self.rounds, self.fraction = start, rounds, tuple(fraction)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.labels: Tensor | None = None
        self.mask: Tensor | None = None
        self.rounds_done = 0
        self._x: Tensor | None = None
        self._total = 1

    def setup(self, ctx: TermContext) -> None:
        self._x = _target_stream(ctx, "self_training")
        n = len(self._x)
        # the stream's "labels" are sample indices, so a batch can look up its pseudo-labels
        ctx.add_stream("target", self._x, torch.arange(n), self.batch_size)
        self.labels = torch.zeros(n, dtype=torch.long)
        self.mask = torch.zeros(n, dtype=torch.bool)
        self._total = ctx.total_steps

    def round_steps(self) -> list[int]:
        """Optimizer steps after which the target set is (re)labelled."""
        first = self.start * self._total
        gap = (self._total - first) / self.rounds
        return [max(1, round(first + k * gap)) for k in range(self.rounds)]

    @torch.no_grad()
    def relabel(self, model: nn.Module, device: torch.device) -> None:
        """Labels the whole target set with ``model`` (eval mode) and selects the kept share."""
        assert self._x is not None
        was = model.training
        model.eval()
        try:
            probs = torch.cat([
                _logits(model(xb.to(device))).float().softmax(-1).cpu()
                for xb in self._x.split(self.eval_batch_size)])
        finally:
            model.train(was)
        k = self.rounds_done
        lo, hi = self.fraction
        frac = lo + (hi - lo) * (k / max(self.rounds - 1, 1))
        self.labels, self.mask = class_balanced_selection(probs, frac)
        self.rounds_done += 1

    def __call__(self, step: StepContext) -> Tensor:
        if self.rounds_done == 0:
            return step.loss.new_zeros(())
        assert self.labels is not None and self.mask is not None
        xt, idx = step.batch("target")
        assert idx is not None
        idx = idx.cpu()
        keep = self.mask[idx].to(step.device).float()
        logits = step.forward(xt).logits
        ce = F.cross_entropy(logits, self.labels[idx].to(step.device), reduction="none")
        return (ce * keep).sum() / max(len(idx), 1)

    def on_step_end(self, step: StepContext) -> None:
        if self.rounds_done < self.rounds and step.step >= self.round_steps()[self.rounds_done]:
            self.relabel(step.model, step.device)

    def state_dict(self) -> dict[str, Any]:
        assert self.labels is not None and self.mask is not None
        return {"labels": self.labels.clone(), "mask": self.mask.clone(),
                "rounds_done": self.rounds_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labels = state["labels"].clone()
        self.mask = state["mask"].clone()
        self.rounds_done = int(state["rounds_done"])


def _logits(out: Any) -> Tensor:
    return out if isinstance(out, Tensor) else out.logits


__all__ = [
    "DANN",
    "GradientReversal",
    "SelfTraining",
    "class_balanced_selection",
    "dann_lambda",
    "domain_discriminator",
    "grad_reverse",
]
