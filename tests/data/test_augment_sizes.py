"""Multi-size training (``data.augment.sizes``): every batch at a side drawn from the list."""

import pytest
import torch
import torch.nn.functional as F

from dltricks.data.augment import build_augment
from dltricks.train.recipe import AugmentConfig


def test_batches_take_every_listed_size_and_keep_their_content():
    aug = build_augment(AugmentConfig(sizes=(6, 8, 12)), 2, "classification", 10)
    assert aug is not None
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    y = torch.arange(4)
    seen = set()
    for _ in range(40):
        out, labels = aug(x, y)
        seen.add(tuple(out.shape[2:]))
        assert torch.equal(labels, y) and out.shape[:2] == (4, 1)
        if out.shape[-1] == 12:  # enlarging is plain bilinear interpolation
            ref = F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)
            assert torch.allclose(out, ref)
        if out.shape[-1] == 8:
            assert torch.equal(out, x)
    assert seen == {(6, 6), (8, 8), (12, 12)}
    # a constant image stays constant at every size (interpolation preserves the mean)
    flat = torch.full((2, 1, 8, 8), 0.5)
    assert torch.allclose(aug(flat, y[:2])[0], torch.tensor(0.5))


def test_sizes_follow_the_global_rng():
    aug = build_augment(AugmentConfig(sizes=(4, 6, 8, 10)), 2, "classification", 10)
    x, y = torch.rand(2, 1, 8, 8), torch.arange(2)
    torch.manual_seed(3)
    first = [aug(x, y)[0].shape[-1] for _ in range(10)]
    torch.manual_seed(3)
    assert [aug(x, y)[0].shape[-1] for _ in range(10)] == first


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="classification"):
        build_augment(AugmentConfig(sizes=(6, 8)), 2, "segmentation", 2)
    with pytest.raises(ValueError, match="positive"):
        build_augment(AugmentConfig(sizes=(0, 8)), 2, "classification", 10)
