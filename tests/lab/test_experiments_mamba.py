"""Mamba vs Transformer experiments trained to a target: the target metrics reach every unit,
an unsolved family makes the claim "premise not met", and ``exit_depth`` reads real depths."""

from types import SimpleNamespace

import pytest
import torch

import dltricks.lab.experiments  # noqa: F401  (registers the experiments)
from dltricks.lab.evaluators import EXIT_THRESHOLDS, exit_depth
from dltricks.lab.experiment import get_experiment
from dltricks.lab.runner import run_experiment
from dltricks.models.registry import create_model

MVT = ("mvt_selective_copying", "mvt_induction_heads", "mvt_mqar", "mvt_mnist1d",
       "mvt_early_exit")


@pytest.mark.parametrize("exp_id", MVT)
def test_every_experiment_trains_to_a_target_with_learning_premises(exp_id):
    exp = get_experiment(exp_id)
    assert exp.target is not None
    assert exp.budget("quick").seeds >= 3 and exp.budget("full").seeds >= 3
    # the compared families must learn the task before a claim is judged
    learned = {p.arm for p in exp.premises if p.metric == "solved"}
    assert {c.treatment for c in exp.claims if c.primary} <= learned | {"early_exit"}
    assert {c.baseline for c in exp.claims if c.primary} <= learned
    # a solved run stops at its plateau; an unsolved one trains to the cap (no early stopping
    # that could end a slow learner before its cap)
    recipe = exp.recipe(exp.arms[0], 0, "full")
    assert exp.target.patience >= 4 and "early_stopping" not in recipe["train"]
    assert exp.target.threshold_for("full") >= exp.target.threshold_for("quick")


def test_smoke_units_carry_target_metrics_and_unsolved_is_premise_not_met(tmp_path):
    res = run_experiment(get_experiment("mvt_selective_copying"), "smoke", tmp_path)
    cap = get_experiment("mvt_selective_copying").budget("smoke").steps
    for name, u in res["units"].items():
        m = u["metrics"]
        assert {"solved", "steps_to_target", "seconds_to_target", "best_val",
                "val_at_equal_compute"} <= set(m), name
        assert m["solved"] in (0.0, 1.0)
        if m["solved"] == 0.0:  # never reached: the cap, the worst value
            assert m["steps_to_target"] == cap
        assert u["curves"]["val"] and u["seconds_per_step"] > 0
    # 4 steps learn nothing: the premises fail, and the verdict says so instead of a claim
    a = res["analysis"]
    assert [p["holds"] for p in a["premises"]] == [False, False]
    assert a["verdict"] == "premise not met"


def test_extrapolation_metrics_are_named_by_factor(tmp_path):
    res = run_experiment(get_experiment("mvt_induction_heads"), "smoke", tmp_path)
    m = res["units"]["mamba/s0"]["metrics"]
    assert {f"acc_x{f}" for f in (1, 2, 4, 8, 16, 32, 64)} <= set(m)
    assert all(0.0 <= m[f"acc_x{f}"] <= 1.0 for f in (1, 64))


def _trainer(model, n=24):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 40, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return SimpleNamespace(model=model, data=SimpleNamespace(test=SimpleNamespace(x=x, y=y)))


def test_exit_depth_reads_the_depths_the_model_returns():
    torch.manual_seed(0)
    ee = create_model("mamba_classifier", num_classes=10, in_channels=1, dim=16, n_layers=3,
                      exit_every=1, exit_threshold=0.9)
    ee.train()
    out = exit_depth(_trainer(ee))
    # threshold 0 would leave at the first exit; 10 classes at init are far from 0.99
    assert out["depth_thr0.99"] == pytest.approx(3.0)
    assert 1.0 <= out["depth_thr0.5"] <= 3.0 and 1.0 <= out["avg_depth"] <= 3.0
    assert out["depth_frac"] == pytest.approx(out["avg_depth"] / 3)
    assert set(out) == {"avg_depth", "depth_frac", *(f"acc_thr{t}" for t in EXIT_THRESHOLDS),
                        *(f"depth_thr{t}" for t in EXIT_THRESHOLDS)}
    assert ee.exit_threshold == 0.9 and ee.training  # threshold and mode restored
    ee.set_exit_threshold(0.0)
    ee.eval()
    with torch.inference_mode():
        _, depth = ee(_trainer(ee).data.test.x, return_depth=True)
    assert depth.float().mean().item() == 1.0  # what threshold 0 means: every input leaves
    # a model without exits uses its whole stack
    plain = create_model("mamba_classifier", num_classes=10, in_channels=1, dim=16, n_layers=3)
    passes = []
    plain.register_forward_hook(lambda *_: passes.append(1))
    out = exit_depth(_trainer(plain))
    assert out["avg_depth"] == 3.0 and out["depth_thr0.5"] == 3.0
    # ... in one pass over the test set (every threshold gives the same), and the exit model
    # in one pass per distinct threshold (its own 0.9 is one of EXIT_THRESHOLDS)
    assert len(passes) == 1 and len({out[f"acc_thr{t}"] for t in EXIT_THRESHOLDS}) == 1
    passes.clear()
    ee.set_exit_threshold(0.9)
    ee.register_forward_hook(lambda *_: passes.append(1))
    exit_depth(_trainer(ee))
    assert len(passes) == len({0.9, *EXIT_THRESHOLDS})


def test_stop_when_solved_ends_only_solved_runs():
    from dltricks.lab.curves import StopWhenSolved, Target

    def run(scores, threshold=0.9, patience=2):
        cb = StopWhenSolved(threshold, patience)
        trainer = SimpleNamespace(step=0, total_steps=1000)
        for i, s in enumerate(scores):
            trainer.step = 10 * (i + 1)
            cb.on_epoch_end(trainer, {"token_accuracy": s, "loss": 1.0})
            if trainer.total_steps == trainer.step:
                return trainer.step
        return None

    # a long plateau below the threshold never stops a run: it trains to its cap
    assert run([0.1, 0.1, 0.1, 0.1, 0.1, 0.1]) is None
    # solved at the 3rd evaluation (0.95), best 0.97 at the 4th, then 2 without improvement
    assert run([0.1, 0.5, 0.95, 0.97, 0.96, 0.97, 0.99]) == 60
    # a plateau before the threshold does not count against the patience after it
    assert run([0.3, 0.3, 0.3, 0.92, 0.95, 0.95, 0.95]) == 70
    with pytest.raises(ValueError, match="patience"):
        Target(0.9, patience=0)
    assert Target(0.9, patience=5).to_dict("full")["patience"] == 5
