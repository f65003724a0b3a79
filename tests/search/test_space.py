"""Search spaces: every key checked against the recipe schema and the model's constructor, bad
ranges rejected before a trial runs, list-valued choices round-trip through Optuna."""

import optuna
import pytest
from typer.testing import CliRunner

from dltricks.cli.main import app
from dltricks.search import SearchSpace, SpaceError
from dltricks.train.recipe import builtin_recipe_path, read_recipe_dict

BASE = read_recipe_dict(builtin_recipe_path("digits_cnn"))


def _flat(text):
    return " ".join(text.split())  # rich wraps long messages


def _space(params, **kw):
    return SearchSpace.from_dict({"params": params, **kw})


@pytest.mark.parametrize("key,msg", [
    ("optimizer.lrr", "unknown key 'optimizer.lrr': 'lrr' is not a key of optimizer. Allowed "
                      "keys there: name, lr,"),
    ("trian.epochs", "'trian' is not a key of the top level"),
    ("model.kwargs.chanels", "model 'small_cnn' takes no argument 'chanels'"),
    ("optimizer", "is a section, not a value"),
    ("optimizer.lr.x", "'lr' is a value, not a section"),
])
def test_unknown_keys_are_named(key, msg):
    with pytest.raises(SpaceError) as info:
        _space({key: {"type": "float", "low": 0.1, "high": 0.2}}).validate(BASE)
    assert msg in str(info.value)


def test_values_outside_the_schema_fail_before_any_trial():
    with pytest.raises(SpaceError, match=r"(?s)optimizer.lr.*-1.0.*greater than 0"):
        _space({"optimizer.lr": {"type": "float", "low": -1.0, "high": 0.1}}).validate(BASE)
    with pytest.raises(SpaceError, match="log-scaled range needs low > 0"):
        _space({"optimizer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}})
    with pytest.raises(SpaceError, match="choices"):
        _space({"data.batch_size": {"type": "categorical"}})
    with pytest.raises(SpaceError, match=r"unknown key 'params\.x\.lo'"):
        _space({"x": {"type": "int", "lo": 1, "high": 2}})
    # nested dict keys a model or dataset takes are fine
    _space({"model.kwargs.kernel_size": {"type": "int", "low": 3, "high": 5, "step": 2},
            "data.kwargs.x": {"type": "categorical", "choices": [1]}}).validate(
        {**BASE, "data": {"name": "arrays"}})


def test_list_choices_round_trip_and_grid():
    space = _space({"model.kwargs.channels": {"type": "categorical",
                                              "choices": [[8, 16], [16, 32]]},
                    "optimizer.weight_decay": {"type": "float", "low": 0.0, "high": 0.1,
                                               "step": 0.05}})
    space.validate(BASE)
    assert space.grid() == {"model.kwargs.channels": ["[8, 16]", "[16, 32]"],
                            "optimizer.weight_decay": [0.0, 0.05, 0.1]}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = space.suggest(study.ask())
    assert values["model.kwargs.channels"] in ([8, 16], [16, 32])
    recipe = space.apply(BASE, values)
    assert recipe["model"]["kwargs"]["channels"] == values["model.kwargs.channels"]
    assert recipe["model"]["kwargs"]["norm"] == "batch"  # the rest of the section stays
    with pytest.raises(SpaceError, match="give float ranges a 'step'"):
        _space({"optimizer.lr": {"type": "float", "low": 0.1, "high": 0.2}}).grid()


def test_cli_bad_space_exits_2_with_the_key(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("params:\n  optimizer.lrr: {type: float, low: 0.001, high: 0.01}\n")
    res = CliRunner().invoke(app, ["tune", "digits_cnn", "--space", str(bad), "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and "optimizer.lrr" in _flat(res.output)
    res = CliRunner().invoke(app, ["tune", "digits_cnn", "--space", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "does not exist" in _flat(res.output)
    res = CliRunner().invoke(app, ["tune", "digits_cnn", "--space", str(bad), "--sampler", "x"])
    assert res.exit_code == 2 and "Unknown sampler" in _flat(res.output)
