"""A picture and a summary of a dataset, for ``dltricks data preview`` and for eyeballing data.

``preview(splits, path)`` draws the first ``n`` training samples in a grid with matplotlib (Agg
backend, no display needed): images in grayscale/RGB titled with the class, 1-D signals as
lines, 2-D segmentation with the mask contour, 3-D volumes as the middle slice with its mask,
token sequences as a strip of token ids with the scored positions marked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from dltricks.data.base import IGNORE_INDEX, DatasetSplits


def summarize(splits: DatasetSplits) -> dict[str, Any]:
    """Facts a CLI prints: shapes, sizes, dtype and value range, train class counts."""
    x, y = splits.train.x, splits.train.y
    summary: dict[str, Any] = {
        "name": splits.name, "task": splits.task, "input_shape": list(splits.input_shape),
        "spatial_dims": splits.spatial_dims, "num_classes": splits.num_classes,
        "vocab_size": splits.vocab_size, "sizes": splits.sizes(), "x_dtype": str(x.dtype),
        "x_range": [x.min().item(), x.max().item()] if x.numel() else None,
    }
    labels = y[y != IGNORE_INDEX] if splits.task != "classification" else y
    counts = torch.bincount(labels.flatten(), minlength=splits.num_classes)
    key = "train_class_counts" if splits.task == "classification" else "train_target_counts"
    summary[key] = counts.tolist()
    return summary


def _title(splits: DatasetSplits, label: int) -> str:
    names = splits.class_names
    return names[label] if names and 0 <= label < len(names) else str(label)


def preview(splits: DatasetSplits, path: str | Path, n: int = 16) -> dict[str, Any]:
    """Writes a PNG grid of up to ``n`` training samples to ``path`` and summarises the data.

    Args:
        splits: the dataset.
        path: output PNG file (parent folders are created).
        n: number of samples to draw (at least 1).

    Returns:
        The :func:`summarize` dict plus ``"preview": str(path)``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = splits.train.x, splits.train.y
    n = min(n, len(x))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if splits.task == "sequence":
        fig, ax = plt.subplots(figsize=(10, 0.35 * n + 1.2))
        ax.imshow(x[:n].numpy(), aspect="auto", cmap="tab20", interpolation="nearest")
        rows, cols = torch.nonzero(y[:n] != IGNORE_INDEX, as_tuple=True)
        ax.scatter(cols.numpy(), rows.numpy(), marker="x", c="k", s=12, label="scored")
        ax.set(xlabel="position", ylabel="sample", title=f"{splits.name}: tokens")
        ax.legend(loc="upper left", fontsize=7)
    else:
        cols = min(n, 8 if splits.spatial_dims != 1 else 4)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.8 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= n:
                ax.axis("off")
                continue
            _draw(ax, splits, x[i], y[i])
        fig.suptitle(f"{splits.name} ({splits.task})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return {**summarize(splits), "preview": str(path)}


def _draw(ax: Any, splits: DatasetSplits, xi: torch.Tensor, yi: torch.Tensor) -> None:
    """One sample: xi (C, *spatial) or (F,), yi () or (*spatial)."""
    seg = splits.task == "segmentation"
    if splits.spatial_dims == 0 or splits.spatial_dims == 1:
        for channel in xi.reshape(-1, xi.shape[-1]):
            ax.plot(channel.numpy(), lw=1)
    else:
        img, mask = xi, yi if seg else None
        if splits.spatial_dims == 3:  # middle slice along depth
            d = xi.shape[1] // 2
            img = xi[:, d]
            mask = yi[d] if seg else None
        if img.shape[0] == 3:
            lo, hi = img.min(), img.max()
            ax.imshow(((img - lo) / (hi - lo + 1e-8)).permute(1, 2, 0).numpy())
        else:
            ax.imshow(img[0].numpy(), cmap="gray")
        if mask is not None and mask.max() > 0:
            ax.contour(mask.numpy(), levels=[0.5], colors="r", linewidths=0.8)
    if not seg:
        ax.set_title(_title(splits, int(yi)), fontsize=8)
