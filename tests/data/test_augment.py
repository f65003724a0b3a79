"""Augmentation: exact flips, masks follow images, mixing gives soft labels, determinism."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dltricks.data import build_augment


def cfg(**kw):
    base = {"hflip": 0.0, "vflip": 0.0, "rotation": 0.0, "crop_scale": None, "intensity": 0.0,
            "noise_std": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}
    return SimpleNamespace(**{**base, **kw})


def _ramp(shape):
    n = 1
    for s in shape:
        n *= s
    return torch.arange(n, dtype=torch.float32).reshape(shape) / n  # asymmetric on every axis


def test_disabled_config_gives_none():
    assert build_augment(cfg(), 2, "classification") is None


@pytest.mark.parametrize(("dims", "option", "axis"), [
    (2, "hflip", -1), (2, "vflip", -2), (3, "hflip", -1), (3, "vflip", -2),
])
def test_flip_with_p1_is_an_exact_flip(dims, option, axis):
    x = _ramp((2, 1, *([6] * dims)))
    aug = build_augment(cfg(**{option: 1.0}), dims, "classification")
    out, y = aug(x, torch.tensor([0, 1]))
    assert torch.allclose(out, x.flip(axis), atol=1e-6)
    assert y.tolist() == [0, 1]


@pytest.mark.parametrize("dims", [2, 3])
def test_mask_follows_image_geometrically(dims):
    torch.manual_seed(0)
    size = [16] * dims
    mask = torch.zeros(4, *size, dtype=torch.long)
    sl = (slice(None), *[slice(3, 9)] * (dims - 1), slice(2, 7))
    mask[sl] = 1
    x = mask.unsqueeze(1).float() * 5.0  # image = scaled mask, so both must stay aligned
    c = cfg(hflip=0.5, vflip=0.5, rotation=30.0,
            crop_scale=(0.6, 1.0) if dims == 2 else None)
    aug = build_augment(c, dims, "segmentation")
    out_x, out_y = aug(x, mask)
    assert out_y.dtype == torch.long and out_y.shape == mask.shape
    assert set(out_y.unique().tolist()) <= {0, 1}
    assert not torch.equal(out_y, mask)  # something moved
    inside = out_x[:, 0][out_y == 1].mean()
    outside = out_x[:, 0][out_y == 0].mean()
    assert inside > 3.5 and outside < 0.5
    agree = ((out_x[:, 0] > 2.5).long() == out_y).float().mean()
    assert agree > 0.97


def test_segmentation_intensity_and_noise_leave_mask_untouched():
    torch.manual_seed(0)
    x, m = torch.randn(3, 1, 8, 8), torch.randint(0, 2, (3, 8, 8))
    aug = build_augment(cfg(intensity=0.5, noise_std=0.1), 2, "segmentation")
    out_x, out_m = aug(x, m)
    assert torch.equal(out_m, m) and not torch.allclose(out_x, x)


def test_intensity_on_1d_signals_is_per_sample_affine():
    torch.manual_seed(0)
    x = torch.randn(5, 1, 40)
    aug = build_augment(cfg(intensity=0.3), 1, "classification")
    out, _ = aug(x, torch.zeros(5, dtype=torch.long))
    for a, b in zip(x, out, strict=True):
        # b = s * a + t exactly (contrast s in [0.7, 1.3]): check by least squares
        design = torch.stack([a.flatten(), torch.ones(a.numel())], 1)
        coef = torch.linalg.lstsq(design, b.flatten().unsqueeze(1)).solution.flatten()
        assert torch.allclose(design @ coef, b.flatten(), atol=1e-4)
        assert 0.69 <= coef[0] <= 1.31


def test_noise_std_is_respected():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 40)
    out, _ = build_augment(cfg(noise_std=0.5), 1, "classification")(x, torch.zeros(64).long())
    assert out.std().item() == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("option", ["mixup_alpha", "cutmix_alpha"])
def test_mixing_gives_convex_soft_labels(option):
    torch.manual_seed(1)
    k, b = 5, 8
    y = torch.arange(b) % k
    x = F.one_hot(y, k).float()[:, :, None, None].expand(b, k, 6, 6).contiguous()
    aug = build_augment(cfg(**{option: 1.0}), 2, "classification", num_classes=k)
    out, soft = aug(x, y)
    assert soft.shape == (b, k) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(b))
    assert (soft >= 0).all()
    # image channel k holds the share of class k: the mixed image's mean per channel must
    # equal the soft label (a convex combination of the two one-hot labels)
    assert torch.allclose(out.mean(dim=(2, 3)), soft, atol=1e-5)
    assert (soft > 0).sum(1).max() <= 2  # at most two classes per sample
    loss = F.cross_entropy(torch.randn(b, k), soft)
    assert torch.isfinite(loss)


def test_deterministic_under_manual_seed():
    c = cfg(hflip=0.5, vflip=0.5, rotation=20.0, crop_scale=(0.7, 1.0), intensity=0.2,
            noise_std=0.1, mixup_alpha=0.4, cutmix_alpha=0.4)
    x, y = torch.rand(6, 3, 12, 12), torch.arange(6) % 3

    def run():
        torch.manual_seed(42)
        aug = build_augment(c, 2, "classification", num_classes=3)
        return [aug(x, y) for _ in range(3)]

    first, second = run(), run()
    for (xa, ya), (xb, yb) in zip(first, second, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(first[0][0], first[1][0])


@pytest.mark.parametrize(("c", "dims", "task", "match"), [
    (cfg(noise_std=0.1), 0, "sequence", "noise_std"),
    (cfg(hflip=0.5), 1, "classification", "hflip"),
    (cfg(rotation=10.0, noise_std=0.1), 1, "classification", "rotation"),
    (cfg(crop_scale=(0.5, 1.0)), 3, "segmentation", "crop_scale"),
    (cfg(crop_scale=(0.0, 1.0)), 2, "classification", "crop_scale"),
    (cfg(mixup_alpha=0.2), 2, "segmentation", "mixup_alpha"),
    (cfg(cutmix_alpha=0.2), 2, "classification", "num_classes"),
])
def test_unsupported_options_raise_naming_them(c, dims, task, match):
    with pytest.raises(ValueError, match=match):
        build_augment(c, dims, task, num_classes=None)
