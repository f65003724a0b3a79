"""Evaluators (metrics measured on the trained model) and the generic plot kinds."""

import pytest
import torch

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
    # a batch of 32 through a 64-8-10 MLP cannot take less than a microsecond, nor a second
    assert 1e-3 < units["w8/s0"]["metrics"]["latency_ms"] < 1e3
    assert units["w8/s0"]["probes"]["_test_by_length"] == {"curve": [1, 2, 3]}
    # parameters are arithmetic, not a sample: the claim is decided as "computed" (exact)
    comp = res["analysis"]["comparisons"][0]
    assert comp["verdict"] == "computed"
    assert comp["diff"] == (64 * 32 + 32 + 320 + 10) - (64 * 8 + 8 + 80 + 10)
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


class _InductionOracle(torch.nn.Module):
    """Predicts, at every position, the token that followed the first trigger (token 0)."""

    def __init__(self, vocab: int = 16) -> None:
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        first = (x == 0).float().argmax(1)  # position of the first trigger
        target = x.gather(1, (first + 1)[:, None])  # (B, 1)
        return torch.nn.functional.one_hot(target.expand_as(x), self.vocab).float() + self.w


class _Trainer:
    def __init__(self, model, seq_len=16):
        from dltricks.data import create_dataset
        from dltricks.train.recipe import recipe_from_dict

        self.model = model
        self.recipe = recipe_from_dict({
            "model": {"name": "mamba_lm"}, "seed": 3,
            "data": {"name": "induction_heads", "kwargs": {"seq_len": seq_len}},
            "train": {"steps": 1, "epochs": None}})
        self.data = create_dataset("induction_heads", seq_len=seq_len, n_samples=30)


def test_length_generalization_scores_an_oracle_one_and_a_constant_model_chance():
    from dltricks.lab.evaluators import length_generalization

    out = length_generalization(_Trainer(_InductionOracle()), (1, 2, 4), tokens_per_length=256)
    assert out == {"acc_len16": 1.0, "acc_len32": 1.0, "acc_len64": 1.0}

    class Constant(_InductionOracle):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full_like(x, 5), self.vocab).float()

    out = length_generalization(_Trainer(Constant()), (1, 4), tokens_per_length=16 * 600,
                                max_samples=600)
    # targets are uniform over the 15 ordinary tokens
    assert all(abs(v - 1 / 15) < 0.05 for v in out.values())


def test_length_generalization_reports_none_where_the_model_rejects_the_length():
    from dltricks.lab.evaluators import length_generalization
    from dltricks.models import create_model

    lm = create_model("transformer_lm", vocab_size=16, dim=16, depth=1, position="learned",
                      max_len=32)
    out = length_generalization(_Trainer(lm), (1, 2, 4), tokens_per_length=64)
    assert out["acc_len16"] is not None and out["acc_len32"] is not None
    assert out["acc_len64"] is None
