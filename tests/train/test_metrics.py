"""Sum-based metrics: hand-made ECE and Dice, streaming equals one-shot, merge and state."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dltricks.train.metrics import (
    MetricAccumulator,
    accuracy,
    classification_stats,
    dice_score,
    expected_calibration_error,
    reliability_bins,
    segmentation_stats,
    summarize,
    token_stats,
)


def _hand_probs():
    # confidences 0.95 (right), 0.95 (right), 0.75 (wrong), 0.65 (right)
    probs = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.75, 0.25], [0.35, 0.65]])
    target = torch.tensor([0, 1, 1, 1])
    return probs, target


def test_ece_hand_example():
    probs, target = _hand_probs()
    # bins of width 0.1: (0.9,1]: |1 - 0.95| * 2/4; (0.7,0.8]: |0 - 0.75| * 1/4;
    # (0.6,0.7]: |1 - 0.65| * 1/4  ->  0.025 + 0.1875 + 0.0875 = 0.3
    assert expected_calibration_error(probs, target, n_bins=10) == pytest.approx(0.3)
    # one bin: |mean acc - mean conf| = |0.75 - 0.825|
    assert expected_calibration_error(probs, target, n_bins=1) == pytest.approx(0.075)


def test_reliability_bins_hand_example():
    probs, target = _hand_probs()
    r = reliability_bins(probs, target, n_bins=10)
    assert r["count"].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 2]
    assert r["accuracy"][[6, 7, 9]] == pytest.approx([1.0, 0.0, 1.0])
    assert r["confidence"][[6, 7, 9]] == pytest.approx([0.65, 0.75, 0.95])
    assert np.isnan(r["accuracy"][0]) and r["lower"][9] == pytest.approx(0.9)


def test_ece_of_calibrated_set_is_near_zero_and_overconfident_is_not():
    g = torch.Generator().manual_seed(0)
    n = 200_000
    conf = 0.5 + 0.5 * torch.rand(n, generator=g)
    probs = torch.stack([conf, 1 - conf], dim=1)
    target = (torch.rand(n, generator=g) >= conf).long()  # class 0 with probability conf
    assert expected_calibration_error(probs, target) < 0.005
    sharp = torch.stack([torch.ones(n) * 0.99, torch.ones(n) * 0.01], dim=1)
    assert expected_calibration_error(sharp, target) == pytest.approx(
        0.99 - (target == 0).double().mean().item(),
        abs=1e-6,  # 0.99 in float32
    )


def test_streaming_equals_one_shot():
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(300, 5, generator=g)
    target = torch.randint(0, 5, (300,), generator=g)
    acc = MetricAccumulator()
    for lo in range(0, 300, 70):  # uneven batches
        acc.update_dict(classification_stats(logits[lo : lo + 70], target[lo : lo + 70]))
    m = acc.compute()
    assert m["ece"] == pytest.approx(
        expected_calibration_error(logits.softmax(-1), target), abs=1e-12
    )
    assert m["accuracy"] == pytest.approx(accuracy(logits, target), abs=1e-12)
    assert m["nll"] == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)


def test_merge_vector_and_state_roundtrip():
    g = torch.Generator().manual_seed(4)
    logits, target = torch.randn(40, 3, generator=g), torch.randint(0, 3, (40,), generator=g)
    a, b, whole = MetricAccumulator(), MetricAccumulator(), MetricAccumulator()
    a.update_dict(classification_stats(logits[:25], target[:25]))
    b.update_dict(classification_stats(logits[25:], target[25:]))
    whole.update_dict(classification_stats(logits, target))
    for acc, n in ((a, 25), (b, 15), (whole, 40)):
        acc.update("loss_sum", 2.0 * n)
        acc.update("loss_count", n)
    a.merge(b)
    assert a.names() == whole.names()
    torch.testing.assert_close(a.as_vector(), whole.as_vector())
    assert a.compute() == pytest.approx(whole.compute())
    assert a.compute()["loss"] == pytest.approx(2.0)

    # an all_reduce over two processes holding `whole` doubles every sum: ratios stay the same
    v = whole.as_vector()
    assert v.dtype == torch.float64 and v.numel() == 3 + 3 * 15 + 2
    doubled = MetricAccumulator()
    doubled.load_state_dict(whole.state_dict())
    doubled.from_vector(2 * v)
    assert doubled.sums["count"].item() == 80
    assert doubled.compute() == pytest.approx(whole.compute())
    with pytest.raises(ValueError, match="as_vector"):
        doubled.from_vector(v[:-1])

    buf = io.BytesIO()
    torch.save(whole.state_dict(), buf)
    buf.seek(0)
    restored = MetricAccumulator()
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.compute() == whole.compute()
    with pytest.raises(ValueError, match="shape"):
        restored.update("ece_count", torch.zeros(3))


def test_dice_hand_example_and_summary():
    target = torch.tensor([[0, 1, 1, 2, 2, 2]])
    pred = torch.tensor([[0, 1, 0, 2, 2, 1]])
    # class 1: |P∩G| = 1, |P| + |G| = 2 + 2 -> 0.5; class 2: 2, 2 + 3 -> 0.8; class 0: 1, 2 + 1
    d = dice_score(pred, target, num_classes=3)
    torch.testing.assert_close(d, torch.tensor([0.5, 0.8], dtype=torch.float64))
    d_bg = dice_score(pred, target, num_classes=4, include_background=True)
    assert d_bg[0].item() == pytest.approx(2 / 3) and torch.isnan(d_bg[3])

    logits = F.one_hot(pred, 3).movedim(-1, 1).float()
    s = summarize(segmentation_stats(logits, target))
    assert s["dice"] == pytest.approx(0.65)
    assert s["dice_class1"] == pytest.approx(0.5) and s["dice_class2"] == pytest.approx(0.8)
    # streamed over the two halves: global Dice from the summed counts
    acc = MetricAccumulator()
    acc.update_dict(segmentation_stats(logits[..., :3], target[:, :3]))
    acc.update_dict(segmentation_stats(logits[..., 3:], target[:, 3:]))
    assert acc.compute()["dice"] == pytest.approx(0.65)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        dice_score(pred, target + 1, num_classes=3)


def test_token_stats_ignore_index():
    logits = torch.zeros(1, 4, 3)
    logits[0, torch.arange(4), torch.tensor([0, 1, 2, 0])] = 5.0  # predictions 0, 1, 2, 0
    target = torch.tensor([[0, 2, -100, 0]])  # right, wrong, ignored, right
    s = summarize(token_stats(logits, target))
    assert s["token_accuracy"] == pytest.approx(2 / 3)
    nll = F.cross_entropy(logits[0, [0, 1, 3]], target[0, [0, 1, 3]]).item()
    assert s["token_nll"] == pytest.approx(nll, rel=1e-6)
    assert s["perplexity"] == pytest.approx(np.exp(nll), rel=1e-6)


def test_soft_targets_and_empty_counts():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    mixed = torch.tensor([[0.8, 0.2], [0.6, 0.4]])  # argmax labels 0, 0
    s = summarize(classification_stats(logits, mixed))
    assert s["accuracy"] == pytest.approx(0.5)
    assert accuracy(logits, mixed) == pytest.approx(0.5)
    nll = -(mixed * logits.log_softmax(-1)).sum() / 2
    assert s["nll"] == pytest.approx(nll.item(), rel=1e-6)
    assert summarize({"correct": torch.tensor(0.0), "count": torch.tensor(0.0)}) == {}
