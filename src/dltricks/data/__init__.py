"""Data: in-memory datasets by name, user-data loaders, augmentation and previews.

Importing this package registers every dataset (digits, mnist1d, seg2d, seg3d,
selective_copying, induction_heads, mqar, the paradigms' digits_classes, partial_labels,
domain_shift and topic_text, and the user-data loaders image_folder, arrays, volumes).
Heavy libraries (scikit-learn, mnist1d, kornia, matplotlib) load only when used.
"""

# importing registers the datasets (domains, text: the paradigms' datasets)
from dltricks.data import (  # noqa: F401
    digits,
    domains,
    mnist1d,
    segmentation,
    sequence_tasks,
    text,
    user,
)
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
