"""Evaluators (metrics measured on the trained model) and the generic plot kinds."""

import pytest

from dltricks.lab.evaluators import register_evaluator, run_evaluators, split_values
from dltricks.lab.experiment import Arm, Budget, Claim, Experiment
from dltricks.lab.report import _by_prefix, figure_png
from dltricks.lab.runner import run_experiment

B = Budget(seeds=2, steps=2)


def _exp(**kw) -> Experiment:
    args = dict(
        id="ev", tips=("optimizers-faster",), title="ev", claim="wider costs more",
        base={"model": {"name": "mlp", "kwargs": {"depth": 1, "width": 8}},
              "data": {"name": "digits", "batch_size": 32},
              "optimizer": {"name": "adam", "lr": 1e-3}},
        arms=(Arm("w8"), Arm("w32", {"model": {"kwargs": {"width": 32}}})),
        claims=(Claim("w32", "w8", "params", "higher"),),
        budgets={"smoke": B, "quick": B, "full": B},
    )
    args.update(kw)
    return Experiment(**args)


@register_evaluator("_test_by_length")
def _by_length(trainer):
    w = trainer.model.net[0].out_features if hasattr(trainer.model, "net") else 1
    return {f"fake_len{n}": float(w * n) for n in (8, 16, 32)} | {"curve": [1, 2, 3]}


def test_split_values_separates_numbers_from_data():
    m, extra = split_values({"a": 1, "b": 2.5, "c": float("nan"), "d": None, "e": [1, 2]})
    assert m == {"a": 1.0, "b": 2.5, "c": None, "d": None} and extra == {"e": [1, 2]}


def test_cost_evaluator_counts_parameters_and_decides_a_deterministic_claim(tmp_path):
    res = run_experiment(_exp(evaluators=("cost", "_test_by_length"),
                              plots=("bars:params", "by:fake_len")), "smoke", tmp_path)
    units = res["units"]
    # mlp on 8x8 digits, depth 1: 64*w + w + w*10 + 10 parameters
    assert units["w8/s0"]["metrics"]["params"] == 64 * 8 + 8 + 8 * 10 + 10
    assert units["w32/s0"]["metrics"]["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert units["w8/s0"]["metrics"]["macs"] == 64 * 8 + 8 * 10
    assert units["w8/s0"]["metrics"]["latency_ms"] > 0
    assert units["w8/s0"]["probes"]["_test_by_length"] == {"curve": [1, 2, 3]}
    # equal values over seeds: the interval collapses to the difference, so the claim is decided
    comp = res["analysis"]["comparisons"][0]
    assert comp["verdict"] == "supported"
    xs, means, _ = _by_prefix(res["analysis"]["arms"]["w8"]["metrics"], "fake_len")
    assert xs == [8.0, 16.0, 32.0] and len(means) == 3
    assert figure_png(res)[:4] == b"\x89PNG"


def test_generic_test_metrics_are_collected(tmp_path):
    res = run_experiment(_exp(), "smoke", tmp_path)
    m = res["units"]["w8/s0"]["metrics"]
    assert {"test_accuracy", "test_loss", "test_ece", "test_nll"} <= set(m)


def test_unknown_evaluator_and_plot_are_errors():
    with pytest.raises(ValueError, match="unknown evaluators"):
        _exp(evaluators=("nope",))
    with pytest.raises(ValueError, match="unknown plot"):
        _exp(plots=("pie",))
    with pytest.raises(ValueError, match="unknown plot"):
        _exp(plots=("by",))


register_evaluator("_test_x1")(lambda trainer: {"x": 1.0})
register_evaluator("_test_x2")(lambda trainer: {"x": 2.0})


def test_evaluator_metric_clash_and_unknown_name_are_errors():
    assert run_evaluators(("_test_x1",), trainer=None) == ({"x": 1.0}, {})
    with pytest.raises(ValueError, match="already reported"):
        run_evaluators(("_test_x1", "_test_x2"), trainer=None)
    with pytest.raises(ValueError, match="Unknown evaluator"):
        run_evaluators(("missing",), trainer=None)
