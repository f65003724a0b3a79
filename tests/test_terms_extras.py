"""The training loop's extras for loss terms: ``task_scale`` (scales the supervised loss, e.g.
Hinton's ``(1 - alpha)`` share without a second CE), terms with ``weight: 0`` (logged, never
added to the loss), and distillation's ``mix: false`` (the soft term alone)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from dltricks.train.terms import (
    LossTerm,
    ModelOutput,
    StepContext,
    TaskScale,
    build_terms,
    known_terms,
    register_term,
    resolve_term,
    unregister_term,
)
from tests.methods import paradigm_helpers
from tests.methods.paradigm_helpers import fit, recipe

teacher_run = paradigm_helpers.teacher_run  # fixture


def _run(d: dict, run_dir) -> dict[str, torch.Tensor]:
    """Trains ``d`` and returns the model's weights after the last step."""
    trainer, _ = fit(d, run_dir)
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _sgd(**kw) -> dict:
    d = recipe(steps=5, **kw)
    d["optimizer"] = {"name": "sgd", "lr": 0.1, "momentum": 0.0}
    return d


def test_task_scale_is_known_and_builds_from_a_recipe_entry():
    from dltricks.train.recipe import TermConfig

    assert "task_scale" in known_terms()
    assert resolve_term("task_scale") is TaskScale
    (bound,) = build_terms([TermConfig(name="task_scale", kwargs={"scale": 0.25})])
    assert isinstance(bound.term, TaskScale) and bound.term.scale == 0.25


@pytest.mark.parametrize("bad", [-0.5, "half", None])
def test_task_scale_refuses_a_bad_scale_in_one_sentence(bad):
    with pytest.raises(ValueError, match="scale must be a number >= 0"):
        TaskScale(bad)


def test_task_scale_equals_sgd_at_a_scaled_learning_rate(tmp_path):
    """Plain SGD on scale * CE takes exactly the steps of SGD on CE at scale * lr: the term
    scales the gradient, and nothing else (data order, initialisation) changes."""
    scaled = _sgd(objectives=[{"name": "task_scale", "kwargs": {"scale": 0.5}}])
    plain = _sgd()
    plain["optimizer"]["lr"] = 0.05
    a, b = _run(scaled, tmp_path / "scaled"), _run(plain, tmp_path / "plain")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # and the runs differ from an unscaled run at lr 0.1 (the test can fail)
    c = _run(_sgd(), tmp_path / "unscaled")
    assert any(not torch.allclose(a[k], c[k]) for k in a)


def _step_ctx(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> StepContext:
    loss = F.cross_entropy(logits, y)
    return StepContext(model=torch.nn.Identity(), ddp_model=torch.nn.Identity(), x=x, y=y,
                       outputs=ModelOutput(logits), loss=loss, step=0, total_steps=1, epoch=0,
                       micro=0, device=torch.device("cpu"), objective=None)


def test_hinton_mixture_from_task_scale_and_an_unmixed_distill_term(teacher_run):
    """task_scale(1 - alpha) + alpha * distill(mix=false) is Hinton's (1 - alpha) CE +
    alpha T^2 KL computed by hand, and equals the distill term's own mixture."""
    from dltricks.data import create_dataset
    from dltricks.methods.distill import Distillation
    from dltricks.train.terms import TermContext

    data = create_dataset("digits", seed=0)
    x, y = data.train.x[:16], data.train.y[:16]
    torch.manual_seed(0)
    logits = torch.randn(16, 10, requires_grad=True)
    ctx = TermContext(recipe=None, data=data, model=torch.nn.Identity(), objective=None,
                      device=torch.device("cpu"), seed=0, run_dir=None, total_steps=1,
                      steps_per_epoch=1)
    alpha, t = 0.7, 3.0
    unmixed = Distillation(str(teacher_run), temperature=t, mix=False)
    mixed = Distillation(str(teacher_run), temperature=t, alpha=alpha)
    for term in (unmixed, mixed):
        term.setup(ctx)
    step = _step_ctx(logits, y, x)
    ce = step.loss
    composed = ce + TaskScale(1 - alpha)(step) + alpha * unmixed(step)["soft"]
    own = ce + sum(mixed(step).values())
    with torch.no_grad():
        t_logits = unmixed.teacher(x)
    p_t = F.softmax(t_logits / t, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(logits / t, -1))).sum(-1).mean()
    by_hand = (1 - alpha) * F.cross_entropy(logits, y) + alpha * t * t * kl
    torch.testing.assert_close(composed, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(own, by_hand, rtol=1e-5, atol=1e-6)
    g1, = torch.autograd.grad(composed, logits, retain_graph=True)
    g2, = torch.autograd.grad(by_hand, logits)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-7)


class _Probe(LossTerm):
    """A term whose loss would change the weights a lot (and is NaN on request)."""

    def __init__(self, nan: bool = False) -> None:
        self.nan = nan

    def __call__(self, step: StepContext) -> torch.Tensor:
        value = 100.0 * step.outputs.logits.pow(2).mean()
        return value * math.nan if self.nan else value


@pytest.fixture
def probe_term():
    register_term("probe_metric", _Probe)
    yield "probe_metric"
    unregister_term("probe_metric")


def test_weight_zero_term_is_logged_but_not_trained_on(tmp_path, probe_term):
    a = _run(_sgd(), tmp_path / "plain")
    b = _run(_sgd(objectives=[{"name": probe_term, "weight": 0.0}]), tmp_path / "metric")
    c = _run(_sgd(objectives=[{"name": probe_term, "weight": 0.01}]), tmp_path / "trained")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)  # bit-identical
    assert any(not torch.allclose(a[k], c[k]) for k in a)  # a weighted term does move them
    rows = [json.loads(line) for line in (tmp_path / "metric" / "metrics.jsonl").open()]
    logged = [r[f"term/{probe_term}"] for r in rows if r.get("split") == "train"]
    assert logged and all(v > 0 for v in logged)


def test_a_nan_metric_with_weight_zero_does_not_reach_the_weights(tmp_path, probe_term):
    d = _sgd(objectives=[{"name": probe_term, "weight": 0.0, "kwargs": {"nan": True}}])
    trainer, summary = fit(d, tmp_path / "nan_metric")
    assert summary["skipped_steps"] == 0
    assert math.isfinite(summary["test_last"]["loss"])
    assert all(torch.isfinite(w).all() for w in trainer.model.state_dict().values())
