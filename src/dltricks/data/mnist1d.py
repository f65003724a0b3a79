"""The ``mnist1d`` dataset: MNIST-1D signals generated locally with the ``mnist1d`` package.

Source: Greydanus & Kobak, "Scaling down deep learning with MNIST-1D" (ICML 2024). Each of the
ten digits is a 12-point 1-D template that is padded, scaled, translated (circularly), sheared,
given correlated and i.i.d. noise and resampled to 40 steps. We call the package's own
generator (``make_dataset``) and never its ``get_dataset``, which downloads a pickle.

The generator's knobs are exposed so that a shifted domain is one kwarg away, e.g.
``create_dataset("mnist1d", iid_noise_scale=0.1, max_translation=8)`` for domain adaptation.

``mnist1d`` seeds Python's and NumPy's *global* RNGs; we save and restore both around the call,
so generating data never changes a caller's random stream.

Tensors: x float (N, 1, 40), standardised over the whole set (mean 0, std 1); y long (N,).
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from dltricks.data.base import ArrayDataset, DatasetSplits, register_dataset, split_indices

_TEMPLATE_LEN = 12
_PADDING = (36, 60)
_MAX_SHIFT = _TEMPLATE_LEN + _PADDING[1]  # length of the padded signal that gets translated


@lru_cache(maxsize=8)
def _generate(settings: tuple[tuple[str, Any], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Runs the mnist1d generator on ``settings`` with the global RNG states preserved."""
    from mnist1d.data import get_dataset_args, make_dataset  # lazy: imports matplotlib
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.update(dict(settings))
    args["train_split"] = 1.0  # we split ourselves (stratified, by seed)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@register_dataset("mnist1d", task="classification",
                  description="MNIST-1D (Greydanus & Kobak 2024), 40-step signals, 10 classes, "
                              "generated locally with domain-shift knobs")
def mnist1d(
    seed: int = 0,
    num_samples: int = 4000,
    max_translation: int = 48,
    scale_coeff: float = 0.4,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 0.02,
    shear_scale: float = 0.75,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> DatasetSplits:
    """Generates MNIST-1D and splits it stratified by class.

    Defaults are the package's (the published dataset's) settings.

    Args:
        seed: seed of the generator and of the split.
        num_samples: number of signals; rounded down to a multiple of 10 (equal classes).
        max_translation: shift knob, the largest circular translation (in steps of the 72-step
            padded signal, 1..72) applied to a template; 1 means no translation.
        scale_coeff: amplitude-scale knob; each signal is multiplied by 1 + scale_coeff * u,
            u ~ U(-0.5, 0.5).
        corr_noise_scale: std of the smooth (Gaussian-filtered) noise filling the padding.
        iid_noise_scale: std of the i.i.d. Gaussian noise added everywhere.
        shear_scale: strength of the random linear trend (shear) added to a signal.
        fractions: train, val, test fractions.

    Returns:
        DatasetSplits with x float (N, 1, 40) and y long (N,).
    """
    if num_samples < 10:
        raise ValueError(f"num_samples must be at least 10 (one per class), got {num_samples}.")
    if not 1 <= int(max_translation) <= _MAX_SHIFT:
        raise ValueError(f"max_translation must be in [1, {_MAX_SHIFT}], got {max_translation}.")
    knobs = {"scale_coeff": scale_coeff, "corr_noise_scale": corr_noise_scale,
             "iid_noise_scale": iid_noise_scale, "shear_scale": shear_scale}
    for key, value in knobs.items():
        if value < 0:
            raise ValueError(f"{key} must be non-negative, got {value}.")
    settings = {"num_samples": int(num_samples), "max_translation": int(max_translation),
                "template_len": _TEMPLATE_LEN, "padding": list(_PADDING),
                "final_seq_length": 40, "shuffle_seq": False, "seed": int(seed),
                **{k: float(v) for k, v in knobs.items()}}
    key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(settings.items()))
    x_np, y_np = _generate(key)
    x = torch.tensor(x_np).unsqueeze(1)  # (N, 1, 40), a fresh copy per call
    y = torch.tensor(y_np)
    full = ArrayDataset(x, y)
    tr, va, te = split_indices(len(y), tuple(fractions), seed=seed, stratify=y)
    return DatasetSplits(
        name="mnist1d", task="classification",
        train=full.subset(tr), val=full.subset(va), test=full.subset(te),
        num_classes=10, input_shape=(1, 40), spatial_dims=1,
        class_names=[str(i) for i in range(10)],
        info={"source": "mnist1d.data.make_dataset (generated locally)",
              "generator": settings, "fractions": list(fractions)},
    )
