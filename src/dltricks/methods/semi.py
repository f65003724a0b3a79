"""Semi-supervised learning: a stream of unlabelled samples beside the labelled batches.

Three loss terms, each drawing from the dataset's ``"unlabelled"`` stream (e.g. the
``partial_labels`` dataset):

* :class:`PseudoLabel` (Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning
  Method for Deep Neural Networks", ICML-W 2013): the network's own most confident class on an
  unlabelled sample is its label, kept only above a confidence ``threshold``; the term's weight
  ramps up linearly between two fractions of the run, as Lee's alpha(t).
* :class:`FixMatch` (Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with
  Consistency and Confidence", NeurIPS 2020): the prediction on a **weakly** augmented view
  (small shifts) gives a hard pseudo-label when confident; the model is trained to predict it
  on a **strongly** augmented view. The paper's RandAugment is replaced by a fixed strong policy
  (kornia affine warps, intensity jitter, noise, cutout by DeVries & Taylor 2017) that suits
  8x8 digits and 1-D signals; the loss is averaged over the whole unlabelled batch.
* :class:`MeanTeacher` (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS
  2017): a teacher whose weights are the exponential moving average of the student's
  (``torch.optim.swa_utils.AveragedModel``, as the engine's EMA) and a consistency cost, the
  squared difference of student and teacher class probabilities under independent noise,
  ramped up with ``exp(-5 (1 - t)^2)``.

Every random draw (augmentations) comes from torch's global RNG, which checkpoints store; the
mean teacher's weights are part of the term's state, so a resumed run continues exactly.

Axis letters: B batch, K classes, C channels, L signal length, H/W image size.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dltricks.train.terms import LossTerm, StepContext, TermContext

# --------------------------------------------------------------------------- pure pieces


def select_pseudo_labels(logits: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Hard pseudo-labels and the mask of samples confident enough to use.

    Args:
        logits: (B, K) predictions (treated as constants).
        threshold: keep a sample when its largest class probability is >= threshold.

    Returns:
        (labels long (B,), mask float (B,) of 0/1).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
    probs = logits.detach().float().softmax(-1)
    conf, labels = probs.max(-1)
    return labels, (conf >= threshold).float()


def masked_pseudo_label_loss(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """``sum_i mask_i CE(logits_i, labels_i) / B``: unconfident samples count as zero, and the
    mean is over the whole batch (FixMatch's convention)."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return (ce * mask).sum() / max(len(labels), 1)


def linear_ramp(progress: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, linear in between (fractions of the run)."""
    if end <= start:
        return 1.0 if progress >= start else 0.0
    return min(1.0, max(0.0, (progress - start) / (end - start)))


def sigmoid_rampup(progress: float, length: float) -> float:
    """Tarvainen & Valpola's ramp ``exp(-5 (1 - t)^2)`` with ``t = progress / length``."""
    if length <= 0:
        return 1.0
    t = min(1.0, max(0.0, progress / length))
    return math.exp(-5.0 * (1.0 - t) ** 2)


def cutout(x: Tensor, size: float) -> Tensor:
    """Zeroes one random box per sample covering ``size`` of each spatial axis (DeVries &
    Taylor 2017). x (B, C, *spatial)."""
    if not 0 < size < 1:
        raise ValueError(f"cutout size must be in (0, 1), got {size}.")
    b = x.shape[0]
    box = torch.ones((b, 1, *x.shape[2:]), device=x.device, dtype=x.dtype)
    for ax, n in enumerate(x.shape[2:]):
        side = max(1, round(size * n))
        lo = torch.randint(0, n - side + 1, (b,), device=x.device)
        pos = torch.arange(n, device=x.device)
        inside = (pos[None, :] >= lo[:, None]) & (pos[None, :] < lo[:, None] + side)  # (B, n)
        shape = [b, 1] + [1] * (x.ndim - 2)
        shape[2 + ax] = n
        box = box * inside.to(x.dtype).view(shape)  # inside along every axis: the box
    return x * (1 - box)


def random_shift_1d(x: Tensor, max_shift: int) -> Tensor:
    """Circular shift of each signal by a random integer in [-max_shift, max_shift]. x (B, C, L)."""
    if max_shift <= 0:
        return x
    b, _, n = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b,), device=x.device)
    idx = (torch.arange(n, device=x.device)[None, :] - shifts[:, None]) % n  # (B, L)
    return x.gather(2, idx[:, None, :].expand_as(x))


class Views:
    """Weak and strong augmentations of a batch for consistency methods.

    2-D images: weak = kornia random translation by up to 1/8 of the side; strong = kornia
    affine warp (rotation 25 degrees, translation 0.15, scale 0.8-1.2, shear 10), contrast and
    brightness jitter, Gaussian noise and a cutout of 40% of each side. 1-D signals: weak = a
    circular shift of up to 2 steps and noise of std 0.05; strong = a shift of up to 6 steps,
    amplitude scaling by U(0.7, 1.3), noise of std 0.3 and a cutout of 25%.

    Args:
        spatial_dims: 1 or 2.
    """

    def __init__(self, spatial_dims: int) -> None:
        if spatial_dims not in (1, 2):
            raise ValueError(f"Weak/strong augmentation supports 1-D signals and 2-D images, "
                             f"not spatial_dims={spatial_dims}.")
        self.spatial_dims = spatial_dims
        self._weak2d: Any = None
        self._strong2d: Any = None

    def _kornia(self) -> None:
        if self._weak2d is None:
            import kornia.augmentation as K  # lazy: slow to import

            self._weak2d = K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), p=1.0)
            self._strong2d = K.RandomAffine(degrees=25.0, translate=(0.15, 0.15),
                                            scale=(0.8, 1.2), shear=10.0, p=1.0)

    def weak(self, x: Tensor) -> Tensor:
        if self.spatial_dims == 2:
            self._kornia()
            return self._weak2d(x)
        return random_shift_1d(x, 2) + 0.05 * torch.randn_like(x)

    def strong(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        view = (b,) + (1,) * (x.ndim - 1)
        if self.spatial_dims == 2:
            self._kornia()
            x = self._strong2d(x)
            mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
            contrast = 1 + 0.5 * (2 * torch.rand(view, device=x.device) - 1)
            brightness = 0.2 * (2 * torch.rand(view, device=x.device) - 1)
            x = (x - mean) * contrast + mean + brightness
            x = x + 0.1 * torch.randn_like(x)
            return cutout(x, 0.4)
        x = random_shift_1d(x, 6)
        x = x * (0.7 + 0.6 * torch.rand(view, device=x.device))
        x = x + 0.3 * torch.randn_like(x)
        return cutout(x, 0.25)


def _unlabelled(ctx: TermContext, who: str, batch_size: int | None) -> None:
    from dltricks.data.domains import get_stream

    stream = get_stream(ctx.data, "unlabelled", f"objective {who!r}")
    ctx.add_stream("unlabelled", stream.x, None, batch_size)


# --------------------------------------------------------------------------- terms


class PseudoLabel(LossTerm):
    """Lee (2013): cross-entropy on the model's own confident predictions of unlabelled data.

    Args:
        threshold: confidence needed to use a pseudo-label.
        ramp: (start, end) fractions of the run over which the term's weight rises 0 → 1.
        batch_size: unlabelled samples per step (default: the recipe's batch size).
    """

    def __init__(self, threshold: float = 0.95, ramp: tuple[float, float] = (0.1, 0.4),
                 batch_size: int | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
        if not 0.0 <= ramp[0] <= ramp[1] <= 1.0:
            raise ValueError(f"ramp must be (start, end) with 0 <= start <= end <= 1, "
                             f"got {ramp}.")
        self.threshold, self.ramp, self.batch_size = threshold, tuple(ramp), batch_size

    def setup(self, ctx: TermContext) -> None:
        _unlabelled(ctx, "pseudo_label", self.batch_size)

    def __call__(self, step: StepContext) -> Tensor:
        xu, _ = step.batch("unlabelled")
        logits = step.forward(xu).logits
        labels, mask = select_pseudo_labels(logits, self.threshold)
        w = linear_ramp(step.progress, *self.ramp)
        return w * masked_pseudo_label_loss(logits, labels, mask)


class FixMatch(LossTerm):
    """Sohn et al. (2020): confident predictions on weak views supervise strong views.

    Args:
        threshold: confidence tau for a pseudo-label (the paper: 0.95).
        batch_size: unlabelled samples per step (the paper uses mu = 7 times the labelled
            batch; default: the recipe's batch size).
    """

    def __init__(self, threshold: float = 0.95, batch_size: int | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}.")
        self.threshold, self.batch_size = threshold, batch_size
        self.views: Views | None = None

    def setup(self, ctx: TermContext) -> None:
        self.views = Views(ctx.data.spatial_dims)
        _unlabelled(ctx, "fixmatch", self.batch_size)

    def __call__(self, step: StepContext) -> Tensor:
        assert self.views is not None, "setup() was not called"
        xu, _ = step.batch("unlabelled")
        with torch.no_grad():
            weak_logits = step.forward(self.views.weak(xu)).logits
        labels, mask = select_pseudo_labels(weak_logits, self.threshold)
        strong_logits = step.forward(self.views.strong(xu)).logits
        return masked_pseudo_label_loss(strong_logits, labels, mask)


class MeanTeacher(LossTerm):
    """Tarvainen & Valpola (2017): consistency with an exponential moving average of the model.

    Args:
        decay: EMA decay of the teacher's weights (the paper: 0.99 early, 0.999 later).
        rampup: fraction of the run over which the weight rises with exp(-5 (1 - t)^2).
        noise: std of the Gaussian input noise of each view (on top of weak augmentation when
            ``augment`` is on).
        augment: also apply the weak augmentation (1-D and 2-D data) to both views.
        batch_size: unlabelled samples per step (default: the recipe's batch size).
    """

    def __init__(self, decay: float = 0.99, rampup: float = 0.3, noise: float = 0.1,
                 augment: bool = True, batch_size: int | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}.")
        if not 0.0 <= rampup <= 1.0:
            raise ValueError(f"rampup must be in [0, 1], got {rampup}.")
        if noise < 0:
            raise ValueError(f"noise must be non-negative, got {noise}.")
        self.decay, self.rampup, self.noise, self.augment = decay, rampup, noise, augment
        self.batch_size = batch_size
        self.teacher: AveragedModel | None = None
        self.views: Views | None = None

    def setup(self, ctx: TermContext) -> None:
        _unlabelled(ctx, "mean_teacher", self.batch_size)
        if self.augment and ctx.data.spatial_dims in (1, 2):
            self.views = Views(ctx.data.spatial_dims)
        self.teacher = AveragedModel(ctx.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                     use_buffers=True)
        self.teacher.requires_grad_(False)
        self.teacher.eval()  # batch-norm layers use the averaged running statistics

    def _view(self, x: Tensor) -> Tensor:
        if self.views is not None:
            x = self.views.weak(x)
        return x + self.noise * torch.randn_like(x) if self.noise else x

    def __call__(self, step: StepContext) -> Tensor:
        assert self.teacher is not None, "setup() was not called"
        xu, _ = step.batch("unlabelled")
        student = step.forward(self._view(xu)).logits.softmax(-1)
        with torch.no_grad(), step.autocast():
            t_out = self.teacher(self._view(xu))
        teacher = (t_out if isinstance(t_out, Tensor) else t_out.logits).float().softmax(-1)
        w = sigmoid_rampup(step.progress, self.rampup)
        return w * ((student - teacher) ** 2).sum(-1).mean()

    def on_step_end(self, step: StepContext) -> None:
        assert self.teacher is not None
        self.teacher.update_parameters(step.model)

    def state_dict(self) -> dict[str, Any]:
        assert self.teacher is not None
        return {"teacher": {k: v.detach().cpu().clone()
                            for k, v in self.teacher.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.teacher is not None
        self.teacher.load_state_dict(state["teacher"])

    def teacher_model(self) -> nn.Module:
        """A copy of the teacher network (for evaluation)."""
        assert self.teacher is not None
        return copy.deepcopy(self.teacher.module)


__all__ = [
    "FixMatch",
    "MeanTeacher",
    "PseudoLabel",
    "Views",
    "cutout",
    "linear_ramp",
    "masked_pseudo_label_loss",
    "random_shift_1d",
    "select_pseudo_labels",
    "sigmoid_rampup",
]
