"""Shared helpers: the embedded datasets and small kwargs that keep them fast in tests."""

from __future__ import annotations

from dltricks.data import USER_DATASETS, list_datasets

SMALL = {
    "mnist1d": {"num_samples": 300},
    "seg2d": {"n_samples": 60},
    "seg3d": {"n_samples": 30, "image_size": 16},
    "selective_copying": {"n_samples": 200},
    "induction_heads": {"n_samples": 200},
    "mqar": {"n_samples": 200},
}

EMBEDDED = [n for n in list_datasets() if n not in USER_DATASETS]
