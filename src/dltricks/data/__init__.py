"""Data: in-memory datasets by name, user-data loaders, augmentation and previews.

Importing this package registers every dataset (digits, mnist1d, seg2d, seg3d,
selective_copying, induction_heads, mqar, and the user-data loaders image_folder, arrays,
volumes). Heavy libraries (scikit-learn, mnist1d, kornia, matplotlib) load only when used.
"""

from dltricks.data import digits, mnist1d, segmentation, sequence_tasks, user
from dltricks.data.augment import build_augment
from dltricks.data.base import (
    DATASETS,
    IGNORE_INDEX,
    ArrayDataset,
    DatasetSplits,
    create_dataset,
    list_datasets,
    register_dataset,
    split_indices,
)
from dltricks.data.preview import preview, summarize
from dltricks.data.user import USER_DATASETS

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "USER_DATASETS",
    "ArrayDataset",
    "DatasetSplits",
    "build_augment",
    "create_dataset",
    "digits",
    "list_datasets",
    "mnist1d",
    "preview",
    "register_dataset",
    "segmentation",
    "sequence_tasks",
    "split_indices",
    "summarize",
    "user",
]
