"""Preview: a non-empty PNG for every embedded dataset and a correct summary."""

from __future__ import annotations

import pytest
import torch

from dltricks.data import create_dataset, preview
from tests.data.conftest import EMBEDDED, SMALL


@pytest.mark.parametrize("name", EMBEDDED)
def test_preview_writes_png_and_summary(tmp_path, name):
    s = create_dataset(name, **SMALL.get(name, {}))
    out = tmp_path / "sub" / f"{name}.png"
    summary = preview(s, out, n=6)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert summary["name"] == name and summary["task"] == s.task
    assert summary["sizes"] == s.sizes()
    assert summary["input_shape"] == list(s.input_shape)
    assert summary["x_range"][0] == s.train.x.min().item()
    if s.task == "classification":
        counts = torch.bincount(s.train.y, minlength=s.num_classes).tolist()
        assert summary["train_class_counts"] == counts


def test_preview_rejects_bad_n(tmp_path):
    with pytest.raises(ValueError, match="n must"):
        preview(create_dataset("selective_copying", n_samples=10), tmp_path / "p.png", n=0)
