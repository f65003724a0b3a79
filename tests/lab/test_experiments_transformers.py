"""The Transformer experiments: the length evaluator on hand-checkable cases, and the recipes.

The loss-spike and scaling measures are tested in tests/analysis (test_stability, test_scaling).
"""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dltricks.data import create_dataset
from dltricks.lab.evaluators import EVALUATORS, length_generalization
from dltricks.lab.experiment import get_experiment
from dltricks.lab.experiments.transformers import COPY_DATA, COPY_LEN
from dltricks.models import create_model
from dltricks.train.recipe import recipe_from_dict
from dltricks.train.run import MetricsLog
from dltricks.train.trainer import model_kwargs_for

IDS = ("tf_warmup", "tf_prenorm", "tf_positions", "tf_efficient_attention", "tf_dropout",
       "tf_hybrid")

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


# --------------------------------------------------------------------------- loss-spike evaluator


def test_loss_spikes_evaluator_reads_only_the_runs_training_losses(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)  # the Trainer's own writer
    for t in range(20):
        # step 15 diverged (NaN, which the writer stores as the string "nan"): a spike
        log.write({"split": "train", "step": t, "loss": math.nan if t == 15 else 1.0})
        if t == 12:
            log.write({"split": "val", "step": t, "loss": 50.0})  # not a training step
    log.close()
    out = EVALUATORS.get("loss_spikes")(SimpleNamespace(run_dir=tmp_path))
    assert out == {"loss_spikes": 1.0, "max_loss_rise": 0.0}


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
