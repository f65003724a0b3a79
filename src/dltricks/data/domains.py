"""Datasets for the learning paradigms: class subsets, scarce labels, shifted domains.

Three registered builders serve transfer learning, semi-supervised learning and domain
adaptation (:mod:`dltricks.methods`):

* ``digits_classes``: the scikit-learn digits restricted to some classes and relabelled
  0..n-1, e.g. pretrain on 0-4 and fine-tune on 5-9.
* ``partial_labels``: any classification dataset with only a stratified fraction of its
  training labels; the rest of the training split is kept as an **unlabelled stream**.
* ``domain_shift``: a source domain with labels and a shifted target domain: transformed
  digits (rotation, inversion, noise) or MNIST-1D generated with other shift knobs (Greydanus
  & Kobak 2024). ``role="adapt"`` trains on the labelled source and exposes the target's
  training inputs as an unlabelled **target stream**; ``role="target"`` trains on the target's
  labels (the upper bound of adaptation). Both test on the target domain.

Extra streams ride with the splits in :class:`SplitsWithStreams` (``splits.streams[name]``);
a loss term registers them with the training loop (``ctx.add_stream``). Their ``y`` holds the
true labels so that diagnostics (e.g. the accuracy of pseudo-labels) can be measured; the
methods never train on them.

Axis letters: N samples, C channels, H/W image size, L signal length.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dltricks.data.base import (
    ArrayDataset,
    DatasetSplits,
    create_dataset,
    register_dataset,
    split_indices,
)


@dataclass
class SplitsWithStreams(DatasetSplits):
    """:class:`DatasetSplits` with extra training streams beside the labelled ``train`` split.

    Attributes:
        streams: named extra data, e.g. ``"unlabelled"`` (semi-supervised) or ``"target"``
            (domain adaptation). Their labels are for diagnostics only.
    """

    streams: dict[str, ArrayDataset] = field(default_factory=dict)


def get_stream(data: DatasetSplits, name: str, needed_by: str) -> ArrayDataset:
    """The stream ``name`` of ``data``, or a ValueError that says which datasets provide one.

    Args:
        data: the run's splits.
        name: stream name.
        needed_by: who asks (used in the message), e.g. ``"objective 'fixmatch'"``.
    """
    streams = getattr(data, "streams", {}) or {}
    if name not in streams or len(streams[name]) == 0:
        have = ", ".join(k for k, v in streams.items() if len(v)) or "none"
        raise ValueError(
            f"{needed_by} needs a {name!r} data stream, but dataset {data.name!r} provides "
            f"{have}; use 'partial_labels' (stream 'unlabelled') or 'domain_shift' with "
            f"role 'adapt' (stream 'target')."
        )
    return streams[name]


def _with_shares(splits: SplitsWithStreams) -> SplitsWithStreams:
    """Records the realised train/val/test shares as ``info["fractions"]`` (a derived dataset's
    splits are not cut by one set of fractions; repeated labelled samples count once)."""
    n_train = len(torch.unique(splits.train.x.flatten(1), dim=0))
    sizes = [n_train, len(splits.val), len(splits.test)]
    splits.info["fractions"] = [n / sum(sizes) for n in sizes]
    return splits


# --------------------------------------------------------------------------- class subsets


@register_dataset("digits_classes", task="classification",
                  description="scikit-learn digits restricted to some classes, relabelled "
                              "0..n-1 (e.g. pretrain on 0-4, fine-tune on 5-9)")
def digits_classes(seed: int = 0, classes: Sequence[int] = (0, 1, 2, 3, 4),
                   fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> DatasetSplits:
    """Digits of ``classes`` only, class ``classes[i]`` relabelled ``i``.

    Args:
        seed: split seed.
        classes: the digit classes to keep (distinct, in 0..9, at least 2).
        fractions: train, val, test fractions.

    Returns:
        DatasetSplits with x float (N, 1, 8, 8) and y long (N,) in [0, len(classes)).
    """
    classes = [int(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(
            0 <= c <= 9 for c in classes):
        raise ValueError(f"classes must be at least two distinct digits in 0..9, got {classes}.")
    full = create_dataset("digits", seed=seed, fractions=tuple(fractions))
    lookup = torch.full((10,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))

    def keep(ds: ArrayDataset) -> ArrayDataset:
        mask = lookup[ds.y] >= 0
        return ArrayDataset(ds.x[mask], lookup[ds.y[mask]])

    return DatasetSplits(
        name="digits_classes", task="classification",
        train=keep(full.train), val=keep(full.val), test=keep(full.test),
        num_classes=len(classes), input_shape=full.input_shape, spatial_dims=2,
        class_names=[str(c) for c in classes],
        info={**full.info, "classes": classes},
    )


# --------------------------------------------------------------------------- scarce labels


def stratified_subset(y: Tensor, fraction: float, seed: int, min_per_class: int = 1) -> Tensor:
    """Indices of a class-stratified random subset holding ``fraction`` of each class.

    Args:
        y: (N,) class labels.
        fraction: share of each class to keep, in (0, 1].
        seed: subset seed.
        min_per_class: at least this many samples of each class (when the class has them).

    Returns:
        Sorted long tensor of indices.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(len(idx), max(min_per_class, round(fraction * len(idx))))
        keep.append(idx[:k])
    return torch.sort(torch.cat(keep)).values


@register_dataset("partial_labels", task="classification",
                  description="a classification dataset with a stratified fraction of its "
                              "training labels; the rest becomes an unlabelled stream")
def partial_labels(seed: int = 0, base: str = "digits",
                   base_kwargs: Mapping[str, Any] | None = None, labelled: float = 0.1,
                   min_per_class: int = 1, repeat_to: int = 0) -> SplitsWithStreams:
    """Keeps ``labelled`` of each class of ``base``'s training split as labelled data.

    The remaining training samples form ``streams["unlabelled"]``; val and test are ``base``'s.
    With ``labelled=1`` the stream is empty (the fully supervised upper bound).

    Args:
        seed: seed of the base dataset and of the labelled subset.
        base: a registered classification dataset.
        base_kwargs: kwargs of ``base``.
        labelled: fraction of each class that keeps its label, in (0, 1].
        min_per_class: at least this many labelled samples per class.
        repeat_to: repeat the labelled samples (whole copies) until there are at least this
            many, so that an epoch of a few labelled samples is not one step long (each epoch
            evaluates and checkpoints); 0 = no repetition. Training on k copies for one epoch
            visits each sample k times, as k epochs would, in another order.
    """
    src = create_dataset(base, seed=seed, **dict(base_kwargs or {}))
    if src.task != "classification":
        raise ValueError(f"partial_labels needs a classification dataset; {base!r} is "
                         f"{src.task}.")
    if min_per_class < 1:
        raise ValueError(f"min_per_class must be >= 1, got {min_per_class}.")
    idx = stratified_subset(src.train.y, labelled, seed + 7919, min_per_class)
    rest = torch.ones(len(src.train), dtype=torch.bool)
    rest[idx] = False
    if repeat_to < 0:
        raise ValueError(f"repeat_to must be >= 0, got {repeat_to}.")
    streams = dict(getattr(src, "streams", {}) or {})
    streams["unlabelled"] = src.train.subset(torch.nonzero(rest).flatten())
    copies = max(1, -(-repeat_to // len(idx))) if repeat_to else 1
    return _with_shares(SplitsWithStreams(
        name="partial_labels", task="classification", train=src.train.subset(idx.repeat(copies)),
        val=src.val, test=src.test, num_classes=src.num_classes, input_shape=src.input_shape,
        spatial_dims=src.spatial_dims, vocab_size=src.vocab_size, class_names=src.class_names,
        info={**src.info, "base": base, "labelled": labelled, "num_labelled": len(idx),
              "copies": copies, "num_unlabelled": int(rest.sum())},
        streams=streams,
    ))


# --------------------------------------------------------------------------- shifted domains


def transform_images(x: Tensor, rotation: float = 0.0, invert: bool = False,
                     noise: float = 0.0, seed: int = 0) -> Tensor:
    """The digits' target domain: every image rotated by ``rotation`` degrees (bilinear,
    zero padding), optionally inverted (1 - x) and given Gaussian noise of std ``noise``.

    Args:
        x: images float (N, C, H, W) in [0, 1].
        rotation: rotation angle in degrees (counter-clockwise), the same for every image.
        invert: replace x by 1 - x (after the rotation).
        noise: std of the additive Gaussian noise (drawn from ``seed``).
        seed: seed of the noise.

    Returns:
        (N, C, H, W) float.
    """
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}.")
    out = x
    if rotation:
        a = math.radians(rotation)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0],
                              [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    if invert:
        out = 1.0 - out
    if noise:
        g = torch.Generator().manual_seed(seed)
        out = out + noise * torch.randn(out.shape, generator=g, dtype=out.dtype)
    return out


_DIGIT_SHIFTS = ("rotation", "invert", "noise")
_MNIST1D_SHIFTS = ("max_translation", "scale_coeff", "corr_noise_scale", "iid_noise_scale",
                   "shear_scale")
#: MNIST-1D target knobs used when ``shift`` is not given: stronger noise, scale and shear
#: than the published defaults (the source domain).
MNIST1D_DEFAULT_SHIFT: dict[str, float] = {"iid_noise_scale": 0.25, "corr_noise_scale": 0.6,
                                           "scale_coeff": 0.8, "shear_scale": 1.5}
DIGITS_DEFAULT_SHIFT: dict[str, Any] = {"rotation": 30.0, "invert": True, "noise": 0.1}


@register_dataset("domain_shift", task="classification",
                  description="source/target domain pairs: transformed digits (rotation, "
                              "inversion, noise) or MNIST-1D with shifted generator knobs")
def domain_shift(seed: int = 0, base: Literal["digits", "mnist1d"] = "digits",
                 shift: Mapping[str, Any] | None = None,
                 role: Literal["adapt", "target"] = "adapt",
                 num_samples: int = 4000) -> SplitsWithStreams:
    """A labelled source domain and a shifted target domain, tested on the target.

    digits: the training split is halved (stratified); the first half is the labelled source
    (clean images), the second half transformed by ``shift`` (keys rotation, invert, noise) is
    the target's training data; val is the source's and the test split is transformed.
    mnist1d: the source is MNIST-1D with the package's defaults, the target is generated with
    another generator seed and the knobs in ``shift`` (keys max_translation, scale_coeff,
    corr_noise_scale, iid_noise_scale, shear_scale).

    Args:
        seed: seed of data, splits and noise.
        base: ``"digits"`` or ``"mnist1d"``.
        shift: the target's transformation or knobs (defaults: :data:`DIGITS_DEFAULT_SHIFT`,
            :data:`MNIST1D_DEFAULT_SHIFT`).
        role: ``"adapt"``: train on source labels, target training inputs as the unlabelled
            stream ``"target"``, validate on the source; ``"target"``: train and validate on
            target labels (the upper bound).
        num_samples: MNIST-1D samples per domain.

    Returns:
        SplitsWithStreams; the test split is always the target domain's.
    """
    if role not in ("adapt", "target"):
        raise ValueError(f"role must be 'adapt' or 'target', got {role!r}.")
    if base == "digits":
        shift = dict(DIGITS_DEFAULT_SHIFT if shift is None else shift)
        bad = sorted(set(shift) - set(_DIGIT_SHIFTS))
        if bad:
            raise ValueError(f"Unknown digits shift {bad}; use {', '.join(_DIGIT_SHIFTS)}.")
        src = create_dataset("digits", seed=seed)
        tr = src.train
        a, b, c = split_indices(len(tr), (0.5, 0.5, 0.0), seed=seed + 104729, stratify=tr.y)
        b = torch.sort(torch.cat([b, c])).values  # rounding leftovers go to the target half
        source_train, target_pool = tr.subset(a), tr.subset(b)

        def to_target(ds: ArrayDataset, salt: int) -> ArrayDataset:
            return ArrayDataset(transform_images(ds.x, float(shift.get("rotation", 0.0)),
                                                 bool(shift.get("invert", False)),
                                                 float(shift.get("noise", 0.0)),
                                                 seed=seed * 1000 + salt), ds.y)

        target_train, target_val, target_test = (to_target(target_pool, 1),
                                                 to_target(src.val, 2), to_target(src.test, 3))
        source_val = src.val
        meta = src
    elif base == "mnist1d":
        shift = dict(MNIST1D_DEFAULT_SHIFT if shift is None else shift)
        bad = sorted(set(shift) - set(_MNIST1D_SHIFTS))
        if bad:
            raise ValueError(f"Unknown mnist1d shift {bad}; use {', '.join(_MNIST1D_SHIFTS)}.")
        src = create_dataset("mnist1d", seed=seed, num_samples=num_samples)
        tgt = create_dataset("mnist1d", seed=seed + 50_000, num_samples=num_samples, **shift)
        source_train, source_val = src.train, src.val
        target_train, target_val, target_test = tgt.train, tgt.val, tgt.test
        meta = src
    else:
        raise ValueError(f"base must be 'digits' or 'mnist1d', got {base!r}.")
    adapt = role == "adapt"
    return _with_shares(SplitsWithStreams(
        name="domain_shift", task="classification",
        train=source_train if adapt else target_train,
        val=source_val if adapt else target_val, test=target_test,
        num_classes=meta.num_classes, input_shape=meta.input_shape,
        spatial_dims=meta.spatial_dims, class_names=meta.class_names,
        info={"base": base, "shift": shift, "role": role, "source": meta.info.get("source")},
        streams={"target": target_train} if adapt else {},
    ))


__all__ = [
    "DIGITS_DEFAULT_SHIFT",
    "MNIST1D_DEFAULT_SHIFT",
    "SplitsWithStreams",
    "digits_classes",
    "domain_shift",
    "get_stream",
    "partial_labels",
    "stratified_subset",
    "transform_images",
]
