"""The Transformer experiments: their measurements on hand-checkable cases, and their recipes."""

import math
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dltricks.data import create_dataset
from dltricks.lab.evaluators import length_generalization
from dltricks.lab.experiment import get_experiment
from dltricks.lab.experiments.transformers import COPY_DATA, COPY_LEN, scaling_costs, spike_stats
from dltricks.models import create_model
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.trainer import model_kwargs_for

IDS = ("tf_warmup", "tf_prenorm", "tf_positions", "tf_efficient_attention", "tf_dropout",
       "tf_hybrid")

# --------------------------------------------------------------------------- loss spikes


def test_spike_stats_on_a_smooth_curve_counts_nothing():
    out = spike_stats([2.0 - 0.01 * t for t in range(50)])
    assert out == {"loss_spikes": 0.0, "max_loss_rise": 0.0}


def test_spike_stats_counts_one_spike_and_its_rise():
    losses = [1.0] * 30
    losses[20] = 2.0  # 2x the trailing median: a spike, 1 nat above the best so far
    losses[25] = 1.2  # 1.2x: below the 1.25 threshold
    out = spike_stats(losses)
    assert out["loss_spikes"] == 1.0
    assert out["max_loss_rise"] == pytest.approx(1.0)


def test_spike_stats_counts_non_finite_steps_as_spikes():
    losses = [1.0] * 15 + [None, math.nan, math.inf] + [1.0] * 5
    out = spike_stats(losses)
    assert out["loss_spikes"] == 3.0 and out["max_loss_rise"] == 0.0


def test_spike_stats_ignores_the_first_window():
    out = spike_stats([1.0, 5.0] + [0.5] * 20)  # the early jump is before the first window
    assert out["loss_spikes"] == 0.0 and out["max_loss_rise"] == pytest.approx(4.0)


# --------------------------------------------------------------------------- length evaluator


class CopyOracle(nn.Module):
    """Selective copying solved by reading the tokens: marker j gets the j-th data token.

    ``right`` markers per sequence are answered correctly, the others with a wrong data token,
    so the token accuracy is right / n_memorize at every length.
    """

    def __init__(self, vocab_size: int, right: int) -> None:
        super().__init__()
        self.vocab_size, self.right = vocab_size, right
        self.dummy = nn.Parameter(torch.zeros(()))  # the evaluator asks for a device

    def forward(self, x):
        out = torch.zeros(*x.shape, self.vocab_size)
        for b in range(x.shape[0]):
            data = x[b][x[b] >= 2]  # noise is 0, the marker 1, data tokens 2..V-1
            for j, pos in enumerate((x[b] == 1).nonzero()[:, 0]):
                tok = int(data[j])
                if j >= self.right:
                    tok = 2 + (tok - 2 + 1) % (self.vocab_size - 2)  # another data token
                out[b, pos, tok] = 1.0
        return out


def _trainer(model, seq_len=COPY_LEN):
    kwargs = {**COPY_DATA, "seq_len": seq_len}
    return SimpleNamespace(
        model=model,
        recipe=SimpleNamespace(seed=0, data=SimpleNamespace(name="selective_copying",
                                                            kwargs=kwargs)),
        data=SimpleNamespace(task="sequence", input_shape=(seq_len,)))


@pytest.mark.parametrize("right,expected", [(4, 1.0), (2, 0.5), (0, 0.0)])
def test_length_evaluator_scores_an_oracle_exactly_at_every_length(right, expected):
    out = length_generalization(_trainer(CopyOracle(8, right)), (1, 2, 4, 8))
    assert set(out) == {"acc_len16", "acc_len32", "acc_len64", "acc_len128"}
    assert all(v == pytest.approx(expected) for v in out.values())


def test_length_evaluator_reports_none_past_a_learned_table():
    torch.manual_seed(0)
    model = create_model("transformer_tagger", vocab_size=8, num_classes=8, dim=16, depth=1,
                         num_heads=2, position="learned", max_len=COPY_LEN, pos_init_std=1.0)
    out = length_generalization(_trainer(model), (1, 2, 4))
    assert 0.0 <= out["acc_len16"] <= 1.0
    assert out["acc_len32"] is None and out["acc_len64"] is None


def test_positions_experiment_sizes_learned_tables_for_the_training_length():
    exp = get_experiment("tf_positions")
    for arm in ("learned", "learned_small"):
        kw = exp.recipe(arm, 0, "quick")["model"]["kwargs"]
        assert kw["position"] == "learned" and kw["max_len"] == COPY_LEN
    assert exp.recipe("learned", 0, "quick")["model"]["kwargs"]["pos_init_std"] == 1.0
    assert exp.recipe("none", 0, "quick")["data"]["kwargs"]["seq_len"] == COPY_LEN


# --------------------------------------------------------------------------- attention cost


class RefusesLong(nn.Module):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        if x.shape[-1] > self.limit:
            raise ValueError("too long")
        return self.lin(x.transpose(1, 2))


def test_scaling_costs_reports_none_where_the_model_refuses_a_length():
    out = scaling_costs(RefusesLong(100), (50, 200), lambda n: (1, 1, n), repeats=1,
                        baseline=RefusesLong(1000))
    assert out["latency_ms_len50"] > 0 and out["peak_mb_len50"] >= 0
    assert out["latency_ratio_len50"] > 0
    assert out["latency_ms_len200"] is None and out["peak_mb_len200"] is None
    assert out["latency_ratio_len200"] is None


class Sleeps(nn.Module):
    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        time.sleep(self.ms / 1e3)
        return x


def test_latency_ratio_against_a_baseline():
    out = scaling_costs(Sleeps(20), (8,), lambda n: (1, n), repeats=4, budget_ms=200,
                        memory=False, baseline=Sleeps(10))
    assert set(out) == {"latency_ms_len8", "latency_ratio_len8"}
    assert out["latency_ms_len8"] >= 20
    assert 1.6 < out["latency_ratio_len8"] < 2.2  # 20 ms vs 10 ms (sleep overshoots a little)


def test_materialised_attention_holds_the_score_matrix_and_sdpa_does_not():
    torch.manual_seed(0)
    n, heads = 512, 2
    kw = dict(in_channels=1, num_classes=3, dim=16, depth=1, num_heads=heads, patch_size=1,
              pool="mean")
    ref = scaling_costs(create_model("transformer_classifier", attention="reference", **kw),
                        (n,), lambda m: (1, 1, m), repeats=1)
    fused = scaling_costs(create_model("transformer_classifier", attention="sdpa", **kw),
                          (n,), lambda m: (1, 1, m), repeats=1)
    scores_mb = heads * n * n * 4 / 2**20  # (B=1, H, L, L) fp32
    assert ref["peak_mb_len512"] >= scores_mb
    assert fused["peak_mb_len512"] < scores_mb


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("exp_id", IDS)
def test_every_arm_builds_a_valid_recipe_and_model(exp_id):
    exp = get_experiment(exp_id)
    assert exp.budget("quick").seeds >= 3
    for arm in exp.arms:
        for profile in ("smoke", "quick"):
            recipe = recipe_from_dict(exp.recipe(arm, 0, profile), source=exp_id)
        data = create_dataset(recipe.data.name, seed=0, **{
            **recipe.data.kwargs, **exp.budget("smoke").data_kwargs})
        model = create_model(recipe.model.name, **model_kwargs_for(
            recipe.model.name, data, dict(recipe.model.kwargs)))
        with torch.no_grad():
            out = model.eval()(data.test.x[:2])
        expected = (2, data.num_classes) if data.task == "classification" else (
            2, data.test.x.shape[1], data.num_classes)
        assert tuple(out.shape) == expected, (exp_id, arm.name)


def test_arms_differ_only_where_the_experiment_says():
    prenorm = get_experiment("tf_prenorm")
    a, b = (prenorm.recipe(n, 0, "quick") for n in ("pre12", "post12"))
    assert a["model"]["kwargs"].pop("norm_first") and not b["model"]["kwargs"].pop("norm_first")
    assert a["model"] == b["model"] and a["optimizer"] == b["optimizer"]
    assert a["schedule"] == {"name": "constant"}  # no warmup
    warm = get_experiment("tf_warmup")
    recipes = {n: warm.recipe(n, 0, "quick") for n in ("constant", "cosine", "warmup")}
    assert {r["optimizer"]["lr"] for r in recipes.values()} == {3e-2}
    assert recipes["warmup"]["schedule"]["warmup_steps"] == 30  # a fifth of 150 steps
    assert recipes["cosine"]["schedule"].get("warmup_steps", 0) == 0
