"""Batch augmentation for training: geometric transforms (kornia), intensity, noise, mixing.

``build_augment(cfg, spatial_dims, task, num_classes)`` turns an augmentation config into a
callable ``augment(x, y) -> (x, y)`` applied to each training batch. ``cfg`` is duck-typed: any
object with the attributes of ``dltricks.train.recipe.AugmentConfig`` (hflip, vflip, rotation,
crop_scale, intensity, noise_std, mixup_alpha, cutmix_alpha); data does not import train.

What runs where:
    * geometric (2-D, 3-D): kornia.augmentation flips, rotation and (2-D only) random resized
      crop. For segmentation the mask gets the *same* transform with nearest interpolation.
      We share sampled parameters between an image module and a mask module ourselves, because
      kornia 0.9's ``AugmentationSequential`` refuses 3-D masks. 3-D has no resized crop in
      kornia, so ``crop_scale`` with 3-D raises rather than being skipped silently.
    * intensity (any float input): per-sample contrast and brightness jitter, written by hand
      because kornia's brightness/contrast assume images in [0, 1] and clamp to it, which breaks
      standardised inputs (MNIST-1D, CT-like volumes). Never applied to masks.
    * noise_std: additive Gaussian noise on the input only.
    * sizes (classification, 1-D to 3-D): multi-size training as in SPP-net (He et al., "Spatial
      Pyramid Pooling in Deep Convolutional Networks", TPAMI 2015, sec. 2.3): each batch is
      resized (linear interpolation, anti-aliased when 2-D shrinks) to a side drawn uniformly
      from ``sizes``, before the other transforms. The model must accept any input size.
    * mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) and cutmix
      (Yun et al., "CutMix", ICCV 2019), classification only, written by hand: kornia's
      ``RandomMixUpV2`` draws lambda uniformly rather than from Beta(alpha, alpha). One lambda per
      batch as in both papers; with both on, each batch picks one at random. With mixing on,
      ``y`` comes back as soft targets float (B, K) for ``F.cross_entropy(logits, y_soft)``.

All randomness comes from torch's global RNG (kornia's included), so a trainer that saves and
restores ``torch.get_rng_state()`` resumes the same augmentation stream.

Axis letters: B batch, C channels, K classes, spatial = (L,), (H, W) or (D, H, W).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_GEOMETRIC = ("hflip", "vflip", "rotation", "crop_scale")
_OPTIONS = (*_GEOMETRIC, "intensity", "noise_std", "mixup_alpha", "cutmix_alpha", "sizes")


def _on(cfg: Any) -> list[str]:
    """Names of the options that are switched on in ``cfg``."""
    return [name for name in _OPTIONS if getattr(cfg, name, None)]


class BatchAugment:
    """The callable returned by :func:`build_augment`; see the module docstring."""

    def __init__(self, cfg: Any, spatial_dims: int, task: str, num_classes: int | None) -> None:
        self.spatial_dims, self.task, self.num_classes = spatial_dims, task, num_classes
        self.hflip = float(getattr(cfg, "hflip", 0.0) or 0.0)
        self.vflip = float(getattr(cfg, "vflip", 0.0) or 0.0)
        self.rotation = float(getattr(cfg, "rotation", 0.0) or 0.0)
        crop = getattr(cfg, "crop_scale", None)
        self.crop_scale = None if crop is None else (float(crop[0]), float(crop[1]))
        self.intensity = float(getattr(cfg, "intensity", 0.0) or 0.0)
        self.noise_std = float(getattr(cfg, "noise_std", 0.0) or 0.0)
        self.mixup_alpha = float(getattr(cfg, "mixup_alpha", 0.0) or 0.0)
        self.cutmix_alpha = float(getattr(cfg, "cutmix_alpha", 0.0) or 0.0)
        self.sizes = tuple(int(v) for v in (getattr(cfg, "sizes", None) or ()))
        self._geo: dict[tuple[int, ...], list[tuple[Any, Any]]] = {}

    @property
    def mixing(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def _geometric_modules(self, size: tuple[int, ...]) -> list[tuple[Any, Any]]:
        """(image module, mask module) pairs for spatial ``size``, built once per size."""
        if size in self._geo:
            return self._geo[size]
        import kornia.augmentation as K  # lazy: kornia is slow to import

        pairs: list[tuple[Any, Any]] = []
        if self.spatial_dims == 2:
            if self.hflip:
                pairs.append((K.RandomHorizontalFlip(p=self.hflip),) * 2)
            if self.vflip:
                pairs.append((K.RandomVerticalFlip(p=self.vflip),) * 2)
            if self.rotation:
                pairs.append((K.RandomRotation(self.rotation, p=1.0),
                              K.RandomRotation(self.rotation, p=1.0, resample="nearest")))
            if self.crop_scale:
                pairs.append((K.RandomResizedCrop(size, scale=self.crop_scale, p=1.0),
                              K.RandomResizedCrop(size, scale=self.crop_scale, p=1.0,
                                                  resample="nearest")))
        elif self.spatial_dims == 3:
            if self.hflip:
                pairs.append((K.RandomHorizontalFlip3D(p=self.hflip),) * 2)
            if self.vflip:
                pairs.append((K.RandomVerticalFlip3D(p=self.vflip),) * 2)
            if self.rotation:
                pairs.append((K.RandomRotation3D(self.rotation, p=1.0),
                              K.RandomRotation3D(self.rotation, p=1.0, resample="nearest")))
        self._geo[size] = pairs
        return pairs

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Augments a batch.

        Args:
            x: inputs float (B, C, *spatial) or (B, F).
            y: labels long (B,) or masks long (B, *spatial).

        Returns:
            (x, y): x of the same shape; y unchanged in shape and dtype, except soft targets
            float (B, K) when mixup/cutmix is on.
        """
        segmentation = self.task == "segmentation"
        if self.sizes:
            x = self._resize(x)
        pairs = self._geometric_modules(tuple(x.shape[2:])) if self.spatial_dims >= 2 else []
        if pairs:
            mask = y.unsqueeze(1).to(x.dtype) if segmentation else None  # (B, 1, *spatial)
            for img_mod, mask_mod in pairs:
                params = img_mod.forward_parameters(x.shape)
                x = img_mod(x, params=params)
                if mask is not None:
                    mask = mask_mod(mask, params=params)
            if mask is not None:
                y = mask.squeeze(1).round().to(y.dtype)
        if self.intensity:
            x = self._jitter(x)
        if self.noise_std:
            x = x + self.noise_std * torch.randn_like(x)
        if self.mixing:
            x, y = self._mix(x, y)
        return x, y

    def _resize(self, x: Tensor) -> Tensor:
        """The batch at a side drawn from ``sizes`` (global RNG: resumes reproduce it)."""
        side = self.sizes[int(torch.randint(len(self.sizes), ()))]
        size = (side,) * self.spatial_dims
        if tuple(x.shape[2:]) == size:
            return x
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[self.spatial_dims]
        shrink = side < min(x.shape[2:])
        return F.interpolate(x, size=size, mode=mode, align_corners=False,
                             antialias=shrink and self.spatial_dims == 2)

    def _jitter(self, x: Tensor) -> Tensor:
        """Per-sample contrast c ~ U(1-s, 1+s) about the mean, brightness b ~ U(-s, s) * std."""
        b = x.shape[0]
        view = (b,) + (1,) * (x.ndim - 1)
        flat = x.reshape(b, -1)
        mean, std = flat.mean(1).view(view), flat.std(1).clamp(min=1e-6).view(view)
        s = self.intensity
        contrast = 1 + s * (2 * torch.rand(view, device=x.device) - 1)
        brightness = s * (2 * torch.rand(view, device=x.device) - 1)
        return (x - mean) * contrast + mean + brightness * std

    def _mix(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        assert self.num_classes is not None  # checked in build_augment
        onehot = F.one_hot(y, self.num_classes).to(x.dtype)  # (B, K)
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha == 0 or bool(torch.rand(()) < 0.5))
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(x.shape[0], device=x.device)
        if not use_cutmix:
            x = lam * x + (1 - lam) * x[perm]
        else:
            x, lam = self._cut(x, perm, lam)
        return x, lam * onehot + (1 - lam) * onehot[perm]

    def _cut(self, x: Tensor, perm: Tensor, lam: float) -> tuple[Tensor, float]:
        """Pastes a random box of relative volume 1 - lam from x[perm]; returns the exact lam."""
        size = x.shape[2:]
        side = (1 - lam) ** (1 / len(size))  # box side as a fraction of each axis
        slices = [slice(None), slice(None)]
        for n in size:
            centre = float(torch.rand(())) * n
            half = side * n / 2
            lo, hi = round(max(0.0, centre - half)), round(min(float(n), centre + half))
            slices.append(slice(lo, hi))
        x = x.clone()
        x[tuple(slices)] = x[perm][tuple(slices)]
        box = 1.0
        for s, n in zip(slices[2:], size, strict=True):
            box *= (s.stop - s.start) / n
        return x, 1.0 - box


def build_augment(cfg: Any, spatial_dims: int, task: str,
                  num_classes: int | None = None) -> BatchAugment | None:
    """Builds the training-batch augmentation described by ``cfg``.

    Args:
        cfg: any object with AugmentConfig's attributes (hflip, vflip, rotation, crop_scale,
            intensity, noise_std, mixup_alpha, cutmix_alpha); missing attributes count as off.
        spatial_dims: 0 (tokens or flat features), 1, 2 or 3.
        task: "classification", "segmentation" or "sequence".
        num_classes: K, required for mixup/cutmix (soft targets are (B, K)).

    Returns:
        A callable ``augment(x, y) -> (x, y)``, or None when no option is on.

    Raises:
        ValueError: an option that does not apply to these data, naming it.
    """
    on = _on(cfg)
    if not on:
        return None
    if spatial_dims not in (0, 1, 2, 3):
        raise ValueError(f"spatial_dims must be 0, 1, 2 or 3, got {spatial_dims}.")
    if task == "sequence":
        raise ValueError(f"Augmentation does not apply to token sequences; switch off: "
                         f"{', '.join(on)}.")
    if task not in ("classification", "segmentation"):
        raise ValueError(f"Unknown task {task!r}; use 'classification' or 'segmentation'.")
    geometric = [n for n in on if n in _GEOMETRIC]
    if geometric and spatial_dims < 2:
        kind = "1-D signals" if spatial_dims == 1 else "flat feature vectors"
        raise ValueError(f"Geometric augmentation is not supported for {kind}; switch off: "
                         f"{', '.join(geometric)} (noise_std and intensity are supported).")
    crop = getattr(cfg, "crop_scale", None)
    if crop is not None:
        if spatial_dims == 3:
            raise ValueError("crop_scale is not supported for 3-D volumes (kornia has no 3-D "
                             "random resized crop); use flips and rotation.")
        if len(crop) != 2 or not 0 < crop[0] <= crop[1] <= 1:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, "
                             f"got {crop}.")
    sizes = getattr(cfg, "sizes", None)
    if sizes:
        if task != "classification" or spatial_dims < 1:
            raise ValueError("sizes (multi-size training) applies to classification of signals, "
                             "images or volumes only.")
        if any(int(v) < 1 for v in sizes):
            raise ValueError(f"sizes must be positive sides in pixels, got {list(sizes)}.")
    for name in ("hflip", "vflip"):
        if not 0 <= float(getattr(cfg, name, 0) or 0) <= 1:
            raise ValueError(f"{name} is a probability and must lie in [0, 1].")
    for name in ("rotation", "intensity", "noise_std", "mixup_alpha", "cutmix_alpha"):
        if float(getattr(cfg, name, 0) or 0) < 0:
            raise ValueError(f"{name} must be non-negative.")
    mixing = [n for n in on if n in ("mixup_alpha", "cutmix_alpha")]
    if mixing and task != "classification":
        raise ValueError(f"Mixing applies to classification only; switch off: "
                         f"{', '.join(mixing)}.")
    if "cutmix_alpha" in on and spatial_dims == 0:
        raise ValueError("cutmix_alpha needs spatial inputs (1-D, 2-D or 3-D), not flat "
                         "feature vectors.")
    if mixing and (num_classes is None or num_classes < 2):
        raise ValueError("Mixup/cutmix need num_classes (>= 2) to build soft targets.")
    return BatchAugment(cfg, spatial_dims, task, num_classes)
