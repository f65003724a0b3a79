"""Dataset containers, deterministic splits and the dataset registry.

Every dataset in dltricks is small enough to live in memory, so a dataset is a pair of tensors
(inputs, targets) plus a description of the task. Axis letters used below: N samples, C
channels, L sequence length, H/W/D spatial sizes, K classes.

Tasks and their tensors:
    classification: x float (N, C, *spatial) or (N, F), y long (N,) in [0, K)
    segmentation:   x float (N, C, *spatial), y long (N, *spatial) in [0, K)
    sequence:       x long (N, L) tokens in [0, vocab_size), y long (N, L) with IGNORE_INDEX where
                    no prediction is scored
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dltricks.registry import Registry

Task = Literal["classification", "segmentation", "sequence"]
IGNORE_INDEX = -100


class ArrayDataset(Dataset):
    """In-memory dataset of aligned ``x`` and ``y`` tensors (first axis = samples).

    Args:
        x: inputs, (N, ...).
        y: targets, (N, ...).
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y disagree on the number of samples: {x.shape[0]} vs {y.shape[0]}."
            )
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]

    def subset(self, index: Tensor) -> ArrayDataset:
        """A new dataset holding the samples at ``index``."""
        return ArrayDataset(self.x[index], self.y[index])


@dataclass
class DatasetSplits:
    """Train/val/test splits of one dataset with what a model needs to know about it.

    Attributes:
        name: registry name.
        task: "classification", "segmentation" or "sequence".
        train, val, test: the splits.
        num_classes: K (for "sequence": the number of output tokens).
        input_shape: shape of one input sample, e.g. (1, 8, 8), (1, 40) or (L,) for tokens.
        spatial_dims: 1, 2 or 3 for signals/images/volumes; 0 for token sequences and flat
            feature vectors.
        vocab_size: number of input tokens for "sequence" tasks, else None.
        class_names: optional readable class names.
        info: free-form facts (generator settings, source) saved with a run.
    """

    name: str
    task: Task
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: int
    input_shape: tuple[int, ...]
    spatial_dims: int
    vocab_size: int | None = None
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        """C for image/signal inputs; 1 for token sequences and flat vectors."""
        return self.input_shape[0] if self.spatial_dims > 0 else 1

    def split(self, name: str) -> ArrayDataset:
        """The split called ``name`` ("train", "val" or "test")."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"Unknown split {name!r}; use 'train', 'val' or 'test'.")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in ("train", "val", "test")}


def split_indices(
    n: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    stratify: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic train/val/test index split.

    Args:
        n: number of samples.
        fractions: train, val, test fractions (must sum to 1).
        seed: permutation seed; the same seed gives the same split.
        stratify: optional (N,) labels; each class is split in the same proportions.

    Returns:
        Three sorted long tensors of indices.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or any(f < 0 for f in fractions):
        raise ValueError(f"Split fractions must be non-negative and sum to 1, got {fractions}.")
    g = torch.Generator().manual_seed(seed)
    groups = [torch.arange(n)] if stratify is None else [
        torch.nonzero(stratify == c).flatten() for c in torch.unique(stratify)
    ]
    parts: list[list[Tensor]] = [[], [], []]
    for idx in groups:
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_train = round(fractions[0] * len(idx))
        n_val = round(fractions[1] * len(idx))
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    return tuple(torch.sort(torch.cat(p)).values for p in parts)  # type: ignore[return-value]


DATASETS: Registry[Callable[..., DatasetSplits]] = Registry("dataset")


def register_dataset(name: str | None = None, *, task: Task, description: str = ""):
    """Decorator registering ``fn(seed=0, **kwargs) -> DatasetSplits`` under ``name``."""
    return DATASETS.register(name, task=task, description=description)


def create_dataset(name: str, seed: int = 0, **kwargs: Any) -> DatasetSplits:
    """Builds a registered dataset; the same ``seed`` and kwargs always give the same data.

    Raises:
        KeyError: unknown dataset name (the message lists the available ones).
        ValueError: a keyword argument the dataset does not take (the message lists those it
            does), or a bad value.
    """
    import inspect

    builder = DATASETS.get(name)
    params = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params) | ({"seed"} & set(kwargs)))
        if unknown:
            allowed = [k for k in params if k != "seed"]
            raise ValueError(f"Dataset {name!r} does not take {', '.join(map(repr, unknown))}; "
                             f"it takes: {', '.join(allowed) or '(no options)'}.")
    return builder(seed=seed, **kwargs)


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names of registered datasets, optionally filtered by a wildcard pattern."""
    return DATASETS.names(pattern)
