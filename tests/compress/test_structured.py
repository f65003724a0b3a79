"""Structured (channel) pruning: the lowest-L1 filters go, masks survive fine-tuning, channels are
removed for real with the output unchanged, and the iterative schedule is Zhu & Gupta's."""

import pytest
import torch

from dltricks.compress import (
    channel_prune,
    cubic_schedule,
    find_channel_groups,
    iterative_channel_prune,
    remove_channels,
)
from dltricks.compress.pipeline import finetune
from dltricks.compress.structured import channel_mask, recalibrate_bn
from dltricks.models import create_model


def _cnn(**kw):
    torch.manual_seed(0)
    return create_model("small_cnn", in_channels=1, num_classes=10, channels=[8, 16], **kw)


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_groups_follow_norms_to_consumers_and_skip_residual_sums():
    groups = find_channel_groups(_cnn())
    assert [(g.producer, g.followers, g.consumers) for g in groups] == [
        ("stages.0.0.conv", ["stages.0.0.norm"], [("stages.1.1.conv", 1)]),
        ("stages.1.1.conv", ["stages.1.1.norm"], [("head", 1)]),
    ]
    # every conv output of a residual CNN meets an addition: nothing is safely prunable
    assert find_channel_groups(_cnn(residual=True)) == []
    with pytest.raises(ValueError, match="No prunable convolution"):
        channel_prune(_cnn(residual=True), 0.5)


def test_prune_masks_the_lowest_l1_filters_in_conv_and_norm():
    model = _cnn()
    conv = model.stages[0][0].conv
    l1 = conv.weight.detach().abs().flatten(1).sum(1)
    kept = channel_prune(model, 0.5, importance="l1")
    assert kept == {"stages.0.0.conv": 4, "stages.1.1.conv": 8}
    mask = channel_mask(model, "stages.0.0.conv")
    assert set(mask.nonzero().flatten().tolist()) == set(l1.topk(4).indices.tolist())
    norm = model.stages[0][0].norm
    assert torch.all(norm.weight[~mask] == 0) and torch.all(norm.bias[~mask] == 0)
    with pytest.raises(ValueError, match="fraction"):
        channel_prune(model, 1.0)


def test_masks_survive_fine_tuning_and_removal_keeps_the_output():
    model = _cnn()
    channel_prune(model, 0.5)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    finetune(model, x, y, steps=5, lr=1e-2)
    mask = channel_mask(model, "stages.0.0.conv")
    assert int(mask.sum()) == 4  # still exactly the masked channels after 5 AdamW steps
    feats = model.stages[0](x)  # the masked channels are exactly zero after norm + ReLU
    assert torch.all(feats[:, ~mask] == 0)
    model.eval()
    before, n_before = model(x), _params(model)
    removed = remove_channels(model)
    assert removed == 4 + 8
    assert model.stages[0][0].conv.out_channels == 4 and model.head.in_features == 8
    assert _params(model) < 0.5 * n_before
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_depthwise_separable_groups_prune_through_the_depthwise_conv():
    model = _cnn(separable=True, stem=3)
    groups = find_channel_groups(model)
    assert groups[0].followers == ["stem.norm", "stages.0.0.depthwise.conv",
                                   "stages.0.0.depthwise.norm"]
    channel_prune(model, 0.5, groups)
    model.eval()
    x = torch.randn(4, 1, 8, 8)
    before, n_before = model(x), _params(model)
    remove_channels(model, groups)
    assert model.stages[0][0].depthwise.conv.groups == 4
    assert _params(model) < n_before
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_cubic_schedule_closed_form():
    got = cubic_schedule(0.5, 3)
    want = [0.5 * (1 - (1 - t / 3) ** 3) for t in (1, 2, 3)]
    assert got == pytest.approx(want) and got[-1] == pytest.approx(0.5)
    assert got == sorted(got)
    with pytest.raises(ValueError, match="steps"):
        cubic_schedule(0.5, 0)


def test_iterative_schedule_fine_tunes_each_round_and_ends_at_the_target():
    rounds = []
    model = _cnn()
    history = iterative_channel_prune(model, 0.5, 3, lambda m, r: rounds.append(r))
    assert rounds == [0, 1, 2] and len(history) == 3
    one_shot = _cnn()
    channel_prune(one_shot, 0.5)
    remove_channels(one_shot)
    assert _params(model) == _params(one_shot)


def test_importance_options_and_bn_recalibration():
    model = _cnn()
    with torch.no_grad():
        model.stages[0][0].norm.weight.copy_(torch.arange(1.0, 9.0))  # channel i has scale i+1
    channel_prune(model, 0.5, importance="bn")
    assert channel_mask(model, "stages.0.0.conv").tolist() == [False] * 4 + [True] * 4
    g = torch.Generator().manual_seed(0)
    rnd = _cnn()
    channel_prune(rnd, 0.5, importance="random", generator=g)
    assert int(channel_mask(rnd, "stages.0.0.conv").sum()) == 4
    with pytest.raises(ValueError, match="importance"):
        channel_prune(_cnn(), 0.5, importance="gradient")
    # recalibration re-estimates the running statistics: mean of the batch, masked channels 0
    x = torch.randn(32, 1, 8, 8) * 3 + 1
    recalibrate_bn(model, [x])
    bn = model.stages[0][0].norm
    with torch.no_grad():
        pre = model.stages[0][0].conv(x)
    torch.testing.assert_close(bn.running_mean, pre.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not model.training
