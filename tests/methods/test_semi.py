"""Semi-supervised learning: pseudo-label selection, views, the unlabelled stream, the terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dltricks.data import create_dataset
from dltricks.data.domains import stratified_subset
from dltricks.methods.semi import (
    MeanTeacher,
    Views,
    cutout,
    linear_ramp,
    masked_pseudo_label_loss,
    select_pseudo_labels,
    sigmoid_rampup,
)
from dltricks.train.trainer import TrainingInterrupted
from tests.methods.paradigm_helpers import fit, recipe


def test_pseudo_labels_respect_the_threshold():
    # probabilities exactly known: logits = log p
    p = torch.tensor([[0.96, 0.04], [0.95, 0.05], [0.5, 0.5], [0.02, 0.98], [0.3, 0.7]])
    labels, mask = select_pseudo_labels(p.log(), 0.95)
    assert labels.tolist()[:2] == [0, 0] and labels.tolist()[3:] == [1, 1]
    assert mask.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]  # >= threshold is kept, the tie too
    assert select_pseudo_labels(p.log(), 0.0)[1].tolist() == [1.0] * 5
    assert select_pseudo_labels(p.log(), 1.0)[1].sum() == 0
    with pytest.raises(ValueError, match="threshold"):
        select_pseudo_labels(p, 1.5)


def test_masked_loss_averages_over_the_whole_batch():
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])
    assert masked_pseudo_label_loss(logits, labels, torch.zeros(4)) == 0
    assert torch.allclose(masked_pseudo_label_loss(logits, labels, torch.ones(4)),
                          F.cross_entropy(logits, labels))
    half = masked_pseudo_label_loss(logits, labels, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(half, F.cross_entropy(logits[:2], labels[:2]) / 2)


def test_ramps():
    assert linear_ramp(0.05, 0.1, 0.4) == 0 and linear_ramp(0.25, 0.1, 0.4) == pytest.approx(0.5)
    assert linear_ramp(0.9, 0.1, 0.4) == 1
    assert sigmoid_rampup(0.0, 0.3) == pytest.approx(torch.exp(torch.tensor(-5.0)).item())
    assert sigmoid_rampup(0.3, 0.3) == 1.0 and sigmoid_rampup(0.5, 0.0) == 1.0


def test_cutout_zeroes_one_box_of_the_given_side():
    x = torch.ones(5, 2, 10, 10)
    out = cutout(x, 0.4)
    zeros = (out == 0).float().sum((1, 2, 3))
    assert torch.equal(zeros, torch.full((5,), 2 * 16.0))  # 4 x 4 box in both channels
    sig = cutout(torch.ones(3, 1, 40), 0.25)
    assert torch.equal((sig == 0).float().sum((1, 2)), torch.full((3,), 10.0))


def test_weak_and_strong_views_keep_shapes_and_differ_in_strength():
    torch.manual_seed(0)
    for dims, x in ((1, torch.randn(16, 1, 40)), (2, torch.rand(16, 1, 8, 8))):
        v = Views(dims)
        w, s = v.weak(x), v.strong(x)
        assert w.shape == s.shape == x.shape
        assert (s - x).abs().mean() > (w - x).abs().mean()
    with pytest.raises(ValueError, match="spatial_dims=0"):
        Views(0)


def test_partial_labels_split_the_training_set_stratified():
    full = create_dataset("digits", seed=1)
    part = create_dataset("partial_labels", seed=1, labelled=0.05)
    n_lab, n_unl = len(part.train), len(part.streams["unlabelled"])
    assert n_lab + n_unl == len(full.train)
    counts = part.train.y.bincount(minlength=10)
    assert counts.min() >= 5 and counts.max() <= 6  # 5% of ~108 per class
    assert torch.equal(part.test.x, full.test.x)
    # no labelled sample is also in the unlabelled stream
    lab = {tuple(r.tolist()) for r in part.train.x.flatten(1)}
    assert not any(tuple(r.tolist()) in lab for r in part.streams["unlabelled"].x.flatten(1))
    rep = create_dataset("partial_labels", seed=1, labelled=0.05, repeat_to=200)
    assert len(rep.train) == 4 * n_lab and len(rep.train) >= 200
    idx = stratified_subset(torch.tensor([0] * 50 + [1] * 3), 0.1, seed=0, min_per_class=2)
    assert (idx < 50).sum() == 5 and (idx >= 50).sum() == 2


@pytest.mark.parametrize("name, kwargs", [
    ("pseudo_label", {"threshold": 0.5, "ramp": [0.0, 0.5]}),
    ("fixmatch", {"threshold": 0.5, "batch_size": 48}),
])
def test_semi_terms_train_on_the_unlabelled_stream(tmp_path, name, kwargs):
    d = recipe(model={"name": "small_cnn", "kwargs": {"channels": [8, 8]}},
               data={"name": "partial_labels", "kwargs": {"labelled": 0.2}, "batch_size": 16},
               objectives=[{"name": name, "kwargs": kwargs}], steps=4)
    trainer, summary = fit(d, tmp_path / name)
    stream = trainer.components.streams["unlabelled"]
    assert stream.draws == 4 and stream.y is None  # the labels never reach the term
    assert stream.batch_size == kwargs.get("batch_size", 16)
    assert summary["steps"] == 4


def test_unlabelled_stream_is_required_and_named(tmp_path):
    with pytest.raises(ValueError, match="objective 'fixmatch' needs a 'unlabelled' data stream"):
        fit(recipe(objectives=[{"name": "fixmatch"}]), tmp_path / "x")


def test_mean_teacher_is_the_ema_of_the_student_and_resumes_exactly(tmp_path):
    obj = [{"name": "mean_teacher", "kwargs": {"decay": 0.9, "rampup": 0.5}}]
    d = recipe(model={"name": "mlp", "kwargs": {"hidden": [16], "dropout": 0.1}},
               data={"name": "partial_labels", "kwargs": {"labelled": 0.3}},
               objectives=obj, steps=7, checkpoint={"every_steps": 2})
    full, s_full = fit(d, tmp_path / "full")
    term = full.terms[0].term
    assert isinstance(term, MeanTeacher)
    assert int(term.teacher.n_averaged) == 7
    # the teacher differs from the student but lies between its start and its end
    t_w = term.teacher.module.head.weight
    assert not torch.equal(t_w, full.model.head.weight)
    with pytest.raises(TrainingInterrupted):
        fit(d, tmp_path / "cut", max_steps_this_call=3)
    cut, s_cut = fit(d, tmp_path / "cut", resume=True)
    assert s_cut["test"] == s_full["test"]
    assert torch.equal(cut.terms[0].term.teacher.module.head.weight, t_w)
