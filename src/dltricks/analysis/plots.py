"""Plots of analyses: receptive-field growth by depth, MACs by layer, ERF heatmaps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from dltricks.analysis.report import Analysis


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _spatial_rows(a: Analysis):
    return [r for r in a.layers if r.kind in ("conv", "pool", "upsample", "merge")
            and r.rf is not None]


def plot_rf_growth(analyses: Sequence[Analysis], path: Path) -> Path:
    """Receptive field (first axis) against the index of conv/pool/merge layers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for a in analyses:
        rows = _spatial_rows(a)
        ax.plot(range(1, len(rows) + 1), [r.rf[0] for r in rows], marker=".", label=a.model)
    ax.set_xlabel("layer (conv / pool / upsample / merge, execution order)")
    ax.set_ylabel("receptive field (pixels)")
    ax.set_title("Receptive-field growth by depth")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_macs_by_layer(analyses: Sequence[Analysis], path: Path) -> Path:
    """MACs of each layer that has any, per model."""
    plt = _plt()
    fig, axes = plt.subplots(len(analyses), 1, figsize=(8, 3 * len(analyses)), squeeze=False)
    for ax, a in zip(axes[:, 0], analyses, strict=True):
        rows = [r for r in a.layers if r.macs]
        ax.bar(range(len(rows)), [r.macs / 1e6 for r in rows])
        ax.set_ylabel("MMACs")
        ax.set_title(f"{a.model}: MACs by layer (total {a.macs / 1e6:.1f} M)")
        ax.set_xlabel("layer with MACs (execution order)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_erf(heatmap: Tensor, path: Path, title: str = "effective receptive field") -> Path:
    """A 2-D ERF heatmap (the middle slice of a 3-D one; a 1-D one as a curve)."""
    plt = _plt()
    h = heatmap
    while h.ndim > 2:
        h = h[h.shape[0] // 2]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if h.ndim == 1:
        ax.plot(h.numpy())
    else:
        im = ax.imshow(h.numpy(), cmap="viridis")
        fig.colorbar(im, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
