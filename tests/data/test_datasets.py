"""Registry-driven checks of every embedded dataset: shapes, dtypes, determinism, splits."""

from __future__ import annotations

import pytest
import torch

from dltricks.data import IGNORE_INDEX, USER_DATASETS, create_dataset, list_datasets
from tests.data.conftest import EMBEDDED, SMALL


def _make(name: str, seed: int = 0):
    return create_dataset(name, seed=seed, **SMALL.get(name, {}))


def test_registry_lists_all_expected_datasets():
    expected = {"digits", "mnist1d", "seg2d", "seg3d", "selective_copying", "induction_heads",
                "mqar", *USER_DATASETS}
    assert expected <= set(list_datasets())
    assert list_datasets("seg*") == ["seg2d", "seg3d"]


@pytest.mark.parametrize("name", EMBEDDED)
def test_shapes_dtypes_and_label_ranges(name):
    s = _make(name)
    assert s.name == name
    for split in ("train", "val", "test"):
        ds = s.split(split)
        x, y = ds.x, ds.y
        assert len(ds) > 0
        assert tuple(x.shape[1:]) == s.input_shape
        assert y.dtype == torch.long
        if s.task == "sequence":
            assert x.dtype == torch.long and s.spatial_dims == 0
            assert y.shape == x.shape
            assert x.min() >= 0 and x.max() < s.vocab_size
            scored = y[y != IGNORE_INDEX]
            assert scored.numel() > 0 and scored.min() >= 0 and scored.max() < s.num_classes
            assert (y != IGNORE_INDEX).any(dim=1).all()  # every sequence has a scored position
        elif s.vocab_size is not None:  # classification of token sequences (topic_text)
            assert x.dtype == torch.long and s.spatial_dims == 0
            assert x.min() >= 0 and x.max() < s.vocab_size
            assert y.shape == (x.shape[0],) and y.min() >= 0 and y.max() < s.num_classes
        else:
            assert x.dtype == torch.float32 and torch.isfinite(x).all()
            assert len(s.input_shape) == s.spatial_dims + 1
            if s.task == "segmentation":
                assert y.shape == (x.shape[0], *x.shape[2:])
            else:
                assert y.shape == (x.shape[0],)
            assert y.min() >= 0 and y.max() < s.num_classes


@pytest.mark.parametrize("name", EMBEDDED)
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = _make(name, 0), _make(name, 0), _make(name, 1)
    for split in ("train", "val", "test"):
        assert torch.equal(a.split(split).x, b.split(split).x)
        assert torch.equal(a.split(split).y, b.split(split).y)
    same_train = a.train.x.shape == c.train.x.shape and torch.equal(a.train.x, c.train.x)
    assert not same_train


@pytest.mark.parametrize("name", EMBEDDED)
def test_split_sizes_match_fractions_and_are_disjoint(name):
    s = _make(name)
    sizes = s.sizes()
    total = sum(sizes.values())
    fracs = s.info["fractions"]
    for split, frac in zip(("train", "val", "test"), fracs, strict=True):
        # stratified splits round per class: allow one sample of slack per class
        tol = s.num_classes if s.task == "classification" else 1
        assert abs(sizes[split] - frac * total) <= tol
    rows = [s.split(k).x.reshape(sizes[k], -1) for k in ("train", "val", "test")]
    if s.task == "sequence":
        rows = [torch.cat([r, s.split(k).y], 1) for r, k in zip(rows, ("train", "val", "test"),
                                                                   strict=True)]
    keys = [{tuple(r.tolist()) for r in part} for part in rows]
    # disjoint: no sample appears in two splits (sample content as identity)
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_digits_is_stratified_and_scaled():
    s = create_dataset("digits", seed=3)
    assert s.train.x.min() == 0 and s.train.x.max() == 1
    counts = {k: torch.bincount(s.split(k).y, minlength=10).float() for k in ("train", "test")}
    total = counts["train"] + counts["test"] + torch.bincount(s.val.y, minlength=10)
    expected = 0.6 * total
    assert (counts["train"] - expected).abs().max() <= 1
    assert sum(s.sizes().values()) == 1797


def test_digits_split_seed_changes_membership_only():
    a, b = create_dataset("digits", seed=0), create_dataset("digits", seed=5)
    assert not torch.equal(a.train.x, b.train.x)
    total_a = a.train.x.sum() + a.val.x.sum() + a.test.x.sum()
    total_b = b.train.x.sum() + b.val.x.sum() + b.test.x.sum()
    assert torch.isclose(total_a, total_b)


def test_custom_fractions_are_honoured():
    s = create_dataset("seg2d", n_samples=100, fractions=(0.5, 0.3, 0.2))
    assert s.sizes() == {"train": 50, "val": 30, "test": 20}


@pytest.mark.parametrize("name", ["seg2d", "seg3d"])
def test_segmentation_lesions_are_brighter_and_contrast_controls_it(name):
    small = SMALL[name]
    faint = create_dataset(name, contrast_range=(0.1, 0.1), **small).train
    strong = create_dataset(name, contrast_range=(2.0, 2.0), **small).train

    def gap(ds):
        m = ds.y.unsqueeze(1).bool()
        return ds.x[m].mean() - ds.x[~m].mean()

    assert 0.0 < gap(faint) < 0.3
    assert 1.6 < gap(strong) < 2.4
    assert (strong.y.flatten(1).sum(1) > 0).all()  # every image has a lesion


def test_segmentation_radius_controls_lesion_size():
    small = create_dataset("seg2d", n_samples=60, radius_range=(1.5, 2.0)).train.y.float().mean()
    large = create_dataset("seg2d", n_samples=60, radius_range=(6.0, 8.0)).train.y.float().mean()
    assert large > 4 * small


@pytest.mark.parametrize(("name", "kwargs", "field"), [
    ("seg2d", {"radius_range": (0.0, 3.0)}, "radius_range"),
    ("seg2d", {"radius_range": (2.0, 40.0)}, "radius_range"),
    ("seg3d", {"contrast_range": (1.0, 0.5)}, "contrast_range"),
    ("seg2d", {"n_samples": 1}, "n_samples"),
    ("mnist1d", {"num_samples": 5}, "num_samples"),
    ("mnist1d", {"max_translation": 0}, "max_translation"),
    ("mnist1d", {"iid_noise_scale": -1.0}, "iid_noise_scale"),
])
def test_bad_kwargs_raise_value_error_naming_them(name, kwargs, field):
    with pytest.raises(ValueError, match=field):
        create_dataset(name, **kwargs)
