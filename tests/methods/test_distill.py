"""Knowledge distillation: the loss against its definition, the T^2 scaling, the term in a run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dltricks.methods.distill import (
    Distillation,
    distillation_loss,
    hint_loss,
    load_teacher,
    make_regressor,
    soft_target_loss,
)
from dltricks.train.run import read_metrics
from tests.methods import paradigm_helpers
from tests.methods.paradigm_helpers import fit, recipe

digits = paradigm_helpers.digits  # fixture
teacher_run = paradigm_helpers.teacher_run  # fixture


def _by_hand(zs: torch.Tensor, zt: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 * mean_b sum_k p_t log(p_t / p_s), with softmax written out."""
    def softmax(z):
        e = torch.exp(z / t - (z / t).max(-1, keepdim=True).values)
        return e / e.sum(-1, keepdim=True)

    pt, ps = softmax(zt.double()), softmax(zs.double())
    return t * t * (pt * (pt.log() - ps.log())).sum(-1).mean()


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0, 10.0])
def test_alpha_one_equals_teacher_matching_by_hand(t):
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g) * 3
    y = torch.randint(0, 5, (6,), generator=g)
    expected = _by_hand(zs, zt, t)
    assert torch.allclose(soft_target_loss(zs, zt, t).double(), expected, rtol=1e-5)
    assert torch.allclose(distillation_loss(zs, zt, y, t, alpha=1.0).double(), expected,
                          rtol=1e-5)
    # alpha = 0 is the hard loss alone; in between, the convex mixture
    assert torch.allclose(distillation_loss(zs, zt, y, t, alpha=0.0), F.cross_entropy(zs, y))
    mix = distillation_loss(zs, zt, y, t, alpha=0.3)
    assert torch.allclose(mix, 0.7 * F.cross_entropy(zs, y) + 0.3 * soft_target_loss(zs, zt, t))


def test_t_squared_keeps_the_gradient_scale_at_high_temperature():
    """Hinton et al.: for large T the gradient of T^2 KL w.r.t. z_s tends to (z_s - z_t) / (K B)
    for zero-mean logits, independent of T; without T^2 it would shrink as 1 / T^2."""
    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    zs, zt = zs - zs.mean(-1, keepdim=True), zt - zt.mean(-1, keepdim=True)
    limit = (zs - zt) / (10 * 4)
    for t in (300.0, 1000.0):
        z = zs.clone().requires_grad_(True)
        soft_target_loss(z, zt, t).backward()
        assert torch.allclose(z.grad, limit, atol=0.01 * limit.abs().max().item())
    z = zs.clone().requires_grad_(True)
    (soft_target_loss(z, zt, 300.0) / 300.0**2).backward()  # without T^2: vanishes
    assert z.grad.abs().max() < 1e-4 * limit.abs().max()


def test_teacher_gets_no_gradient_and_bad_arguments_are_sentences():
    zs = torch.randn(3, 4, requires_grad=True)
    zt = torch.randn(3, 4, requires_grad=True)
    soft_target_loss(zs, zt, 2.0).backward()
    assert zt.grad is None and zs.grad is not None
    with pytest.raises(ValueError, match="temperature must be positive"):
        soft_target_loss(zs, zt, 0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        soft_target_loss(zs, torch.randn(3, 5), 2.0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        Distillation("x", alpha=1.5)
    with pytest.raises(ValueError, match="needs student_layer and teacher_layer"):
        Distillation("x", hint_weight=1.0)


def test_hint_regressor_maps_student_channels_to_the_teacher_and_pools_space():
    s, t = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3)
    reg = make_regressor((8, 6, 6), (16, 3, 3))
    assert isinstance(reg, torch.nn.Conv2d) and reg.kernel_size == (1, 1)
    expected = F.mse_loss(reg(F.adaptive_avg_pool2d(s, (3, 3))), t)
    assert torch.allclose(hint_loss(s, t, reg), expected)
    assert isinstance(make_regressor((8,), (16,)), torch.nn.Linear)


def test_teacher_from_a_run_is_frozen_in_eval_mode_and_reproduces_the_run(teacher_run, digits):
    from dltricks.train.evaluate import evaluate_run

    teacher = load_teacher(str(teacher_run), digits, torch.device("cpu"))
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    # the loaded weights are the run's: its accuracy on test is the stored one
    acc = (teacher(digits.test.x).argmax(-1) == digits.test.y).float().mean().item()
    stored, _ = evaluate_run(teacher_run, "test")
    assert acc == pytest.approx(stored["accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match="not a run folder"):
        fit(recipe(objectives=[{"name": "distill", "kwargs": {"teacher": "/nonexistent"}}]),
            teacher_run.parent / "bad")


def test_distill_term_in_a_run_makes_hintons_mixture(teacher_run, tmp_path):
    """With weight 1 the logged terms are alpha*T^2*KL and -alpha*CE: total = Hinton's L."""
    obj = [{"name": "distill", "kwargs": {"teacher": str(teacher_run), "temperature": 3.0,
                                          "alpha": 0.75}}]
    trainer, summary = fit(recipe(objectives=obj, steps=4), tmp_path / "s")
    rec = next(r for r in read_metrics(tmp_path / "s") if r["split"] == "train")
    assert rec["term/distill/hard"] == pytest.approx(-0.75 * rec["loss"], rel=1e-5)
    assert rec["term/distill/soft"] > 0
    # the term's teacher is not part of the student's checkpoint
    assert summary["num_params"] == sum(p.numel() for p in trainer.model.parameters())
    teacher = trainer.terms[0].term.teacher
    assert summary["num_params"] < sum(p.numel() for p in teacher.parameters())


def test_hint_distillation_trains_its_regressor_and_resumes_exactly(teacher_run, tmp_path):
    from dltricks.train.trainer import TrainingInterrupted

    obj = [{"name": "distill", "kwargs": {
        "teacher": {"run": str(teacher_run)}, "hint_weight": 1.0,
        "student_layer": "features", "teacher_layer": "features"}}]
    d = recipe(model={"name": "mlp", "kwargs": {"hidden": [16], "dropout": 0.2}},
               objectives=obj, steps=8, checkpoint={"every_steps": 3})
    full, s_full = fit(d, tmp_path / "full")
    reg = full.terms[0].term.regressor
    assert isinstance(reg, torch.nn.Linear) and reg.in_features == 16 and reg.out_features == 64
    with pytest.raises(TrainingInterrupted):
        fit(d, tmp_path / "cut", max_steps_this_call=4)
    cut, s_cut = fit(d, tmp_path / "cut", resume=True)
    assert s_cut["test"] == s_full["test"]
    assert torch.equal(reg.weight, cut.terms[0].term.regressor.weight)


def test_builtin_recipe_trains_its_teacher_then_the_student(tmp_path):
    from typer.testing import CliRunner

    from dltricks.cli.main import app

    res = CliRunner().invoke(app, [
        "train", "digits_distill", "train.steps=3", "schedule.warmup_steps=0",
        "objectives=[{name: distill, kwargs: {teacher: {recipe: digits_cnn, overrides: "
        "[train.steps=3, schedule.warmup_steps=0]}, temperature: 4.0, alpha: 0.9}}]",
        "--run-dir", str(tmp_path / "run")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "teacher" / "summary.json").is_file()
    assert (tmp_path / "run" / "summary.json").is_file()
