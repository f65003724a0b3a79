"""The ``digits`` dataset: scikit-learn's bundled 8x8 handwritten digits (no download).

Source: the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998),
1797 images of 8x8 pixels with intensities 0..16, shipped inside scikit-learn as
``sklearn.datasets.load_digits``.

Tensors: x float (N, 1, 8, 8) in [0, 1] (pixel / 16), y long (N,) in [0, 10).
"""

from __future__ import annotations

import torch

from dltricks.data.base import ArrayDataset, DatasetSplits, register_dataset, split_indices


@register_dataset("digits", task="classification",
                  description="scikit-learn 8x8 handwritten digits, 1797 images, 10 classes")
def digits(seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> DatasetSplits:
    """Builds the digits splits, stratified by class.

    Args:
        seed: seed of the (stratified) train/val/test split; the images themselves are fixed.
        fractions: train, val, test fractions.

    Returns:
        DatasetSplits with x float (N, 1, 8, 8) in [0, 1] and y long (N,).
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    full = ArrayDataset(x, y)
    tr, va, te = split_indices(len(y), tuple(fractions), seed=seed, stratify=y)
    return DatasetSplits(
        name="digits", task="classification",
        train=full.subset(tr), val=full.subset(va), test=full.subset(te),
        num_classes=10, input_shape=(1, 8, 8), spatial_dims=2,
        class_names=[str(i) for i in range(10)],
        info={"source": "sklearn.datasets.load_digits", "num_samples": len(y),
              "fractions": list(fractions), "split_seed": seed},
    )
