"""Domain adaptation: gradient reversal, DANN's schedule, shifted domains, the terms in runs."""

from __future__ import annotations

import math

import pytest
import torch

from dltricks.data import create_dataset
from dltricks.data.domains import transform_images
from dltricks.methods.domain import (
    DANN,
    GradientReversal,
    SelfTraining,
    class_balanced_selection,
    dann_lambda,
    grad_reverse,
)
from dltricks.train.trainer import TrainingInterrupted
from tests.methods.paradigm_helpers import fit, recipe


@pytest.mark.parametrize("lambd", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_flips_and_scales_backward(lambd):
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -lambd * w)
    m = GradientReversal(lambd)
    x2 = torch.randn(2, 2, requires_grad=True)
    m(x2).sum().backward()
    assert torch.allclose(x2.grad, torch.full((2, 2), -lambd))


def test_dann_lambda_follows_ganins_schedule():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_lambda(2.0) == dann_lambda(1.0)  # clamped to the run
    vals = [dann_lambda(p / 10) for p in range(11)]
    assert vals == sorted(vals)
    with pytest.raises(ValueError, match="non-negative"):
        grad_reverse(torch.zeros(1), -1.0)


def test_class_balanced_selection_keeps_the_most_confident_share_of_each_class():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45],
                          [0.3, 0.7], [0.1, 0.9]])
    labels, mask = class_balanced_selection(probs, 0.5)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1]
    # class 0: the top 2 of 4; class 1: the top 1 of 2 (not all six above 0.5 confidence)
    assert mask.tolist() == [True, True, False, False, False, True]
    with pytest.raises(ValueError, match="fraction"):
        class_balanced_selection(probs, 0.0)


def test_rotating_by_90_degrees_is_rot90_and_inversion_is_one_minus_x():
    x = torch.rand(3, 1, 8, 8)
    rot = transform_images(x, rotation=90.0)
    # +90 degrees is a counter-clockwise quarter turn of the displayed image (row 0 on top)
    assert torch.allclose(rot, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(transform_images(x, invert=True), 1 - x)
    noisy = transform_images(x, noise=0.5, seed=3)
    assert torch.equal(noisy, transform_images(x, noise=0.5, seed=3))
    assert (noisy - x).std().item() == pytest.approx(0.5, rel=0.15)


def test_domain_shift_pairs_source_target_and_the_upper_bound():
    adapt = create_dataset("domain_shift", seed=0, shift={"rotation": 30.0}, role="adapt")
    target = create_dataset("domain_shift", seed=0, shift={"rotation": 30.0}, role="target")
    # one test split (the target's), disjoint halves of the digits' training split
    assert torch.equal(adapt.test.x, target.test.x)
    assert torch.equal(adapt.streams["target"].x, target.train.x)
    assert len(adapt.train) + len(target.train) == len(create_dataset("digits", seed=0).train)
    assert not target.streams
    with pytest.raises(ValueError, match="Unknown digits shift"):
        create_dataset("domain_shift", shift={"rotate": 3})
    m1 = create_dataset("domain_shift", base="mnist1d", num_samples=200,
                        shift={"iid_noise_scale": 0.5})
    assert m1.train.x.shape[1:] == (1, 40) and len(m1.streams["target"]) == len(m1.train)
    assert not torch.equal(m1.streams["target"].x, m1.train.x)


def test_dann_trains_its_discriminator_through_the_reversal(tmp_path):
    d = recipe(model={"name": "small_cnn", "kwargs": {"channels": [8, 8]}},
               data={"name": "domain_shift", "kwargs": {"shift": {"rotation": 45.0}}},
               objectives=[{"name": "dann", "kwargs": {"hidden": 16}}], steps=5)
    trainer, summary = fit(d, tmp_path / "dann")
    term = trainer.terms[0].term
    assert isinstance(term, DANN)
    assert term.discriminator[0].in_features == 8  # the head's input: the pooled features
    assert trainer.components.streams["target"].draws == 5
    assert summary["test"]["accuracy"] >= 0
    with pytest.raises(ValueError, match=r"needs a 'target' data stream.*domain_shift"):
        fit(recipe(objectives=[{"name": "dann"}]), tmp_path / "plain")


def test_self_training_labels_in_rounds_and_resumes_exactly(tmp_path):
    obj = [{"name": "self_training", "kwargs": {"start": 0.25, "rounds": 2,
                                                "fraction": [0.3, 0.6]}}]
    d = recipe(model={"name": "mlp", "kwargs": {"hidden": [16], "dropout": 0.1}},
               data={"name": "domain_shift", "kwargs": {"shift": {"noise": 0.3}}},
               objectives=obj, steps=8, checkpoint={"every_steps": 3})
    full, s_full = fit(d, tmp_path / "full")
    term = full.terms[0].term
    assert isinstance(term, SelfTraining)
    assert term.round_steps() == [2, 5] and term.rounds_done == 2
    n = len(term.mask)
    assert 0.6 * n - 10 <= int(term.mask.sum()) <= 0.6 * n + 10  # ~60% per class, >= 1 each
    with pytest.raises(TrainingInterrupted):
        fit(d, tmp_path / "cut", max_steps_this_call=4)
    cut, s_cut = fit(d, tmp_path / "cut", resume=True)
    assert s_cut["test"] == s_full["test"]
    assert torch.equal(cut.terms[0].term.labels, term.labels)


@pytest.mark.parametrize("name, extra", [
    ("digits_dann", []),
    ("digits_semi", []),
    ("digits_finetune", [
        "objectives=[{name: finetune, kwargs: {mode: lora, init: {recipe: digits_cnn, "
        "overrides: [train.steps=2, schedule.warmup_steps=0, 'model.kwargs.channels=[16,32]', "
        "model.kwargs.dropout=0.0, data.name=digits_classes]}}}]"]),
])
def test_builtin_paradigm_recipes_train_through_the_cli(tmp_path, name, extra):
    """Each built-in paradigm recipe validates, builds its terms and trains (2 steps)."""
    from typer.testing import CliRunner

    from dltricks.cli.main import app
    from dltricks.train.recipe import load_builtin_recipe
    from dltricks.train.terms import build_terms

    assert build_terms(load_builtin_recipe(name).objectives)
    res = CliRunner().invoke(app, ["train", name, "train.steps=2", *extra,
                                   "--run-dir", str(tmp_path / "run")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "summary.json").is_file()
