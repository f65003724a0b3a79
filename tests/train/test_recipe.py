"""Recipe schema: validation errors name the key, overrides, built-in recipes."""

import pytest
import yaml

from dltricks.train.recipe import (
    Recipe,
    RecipeError,
    apply_overrides,
    list_builtin_recipes,
    load_builtin_recipe,
    load_recipe,
    recipe_from_dict,
    resolve_recipe,
)

BASE = {"model": {"name": "mlp"}, "data": {"name": "digits"}}


def test_minimal_recipe_gets_defaults():
    r = recipe_from_dict(BASE)
    assert r.optimizer.name == "adamw" and r.train.epochs == 10 and r.schedule.name == "constant"


def test_unknown_top_level_key_names_key_and_allowed():
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({**BASE, "optimiser": {"lr": 1}})
    msg = str(e.value)
    assert "unknown key 'optimiser'" in msg
    assert "optimizer" in msg and "schedule" in msg  # the allowed keys are listed


def test_unknown_nested_key_names_full_path_and_allowed():
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({**BASE, "train": {"clip": {"mode": "norm", "maximum": 1.0}}})
    msg = str(e.value)
    assert "'train.clip.maximum'" in msg
    assert "mode, max" in msg


def test_ill_typed_value_names_key_and_value():
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({**BASE, "optimizer": {"lr": "fast"}})
    assert "'optimizer.lr'" in str(e.value) and "'fast'" in str(e.value)


def test_bad_literal_lists_choices():
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({**BASE, "optimizer": {"name": "adagrad"}})
    assert "'optimizer.name'" in str(e.value) and "'sgd'" in str(e.value)


def test_missing_required_key():
    with pytest.raises(RecipeError, match="missing required key 'model'"):
        recipe_from_dict({"data": {"name": "digits"}})


@pytest.mark.parametrize(
    "section, message",
    [
        ({"schedule": {"name": "step"}}, "needs step_size"),
        ({"schedule": {"name": "multistep"}}, "needs milestones"),
        ({"schedule": {"name": "multistep", "milestones": [5, 2]}}, "increasing"),
        ({"optimizer": {"name": "adam", "nesterov": True}}, "nesterov"),
        ({"train": {"epochs": None}}, "train.epochs or train.steps"),
        ({"optimizer": {"lr": -1}}, "greater than 0"),
    ],
)
def test_cross_field_rules(section, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({**BASE, **section})


def test_overrides_parse_yaml_values_and_nest():
    d = apply_overrides(BASE, ["optimizer.lr=1e-2", "schedule.milestones=[10, 20]",
                               "train.clip.mode=norm", "data.kwargs.num_samples=100"])
    r = recipe_from_dict(d)
    assert r.optimizer.lr == pytest.approx(0.01)
    assert r.schedule.milestones == [10, 20]
    assert r.train.clip.mode == "norm"
    assert r.data.kwargs == {"num_samples": 100}
    assert BASE == {"model": {"name": "mlp"}, "data": {"name": "digits"}}  # input untouched


def test_override_unknown_key_is_validated_too():
    with pytest.raises(RecipeError, match=r"unknown key 'train\.epochz'"):
        recipe_from_dict(apply_overrides(BASE, ["train.epochz=3"]))


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1", "model.name.x=1"])
def test_malformed_overrides(bad):
    with pytest.raises(RecipeError):
        apply_overrides(BASE, [bad])


def test_yaml_round_trip(tmp_path):
    r = recipe_from_dict({**BASE, "train": {"label_smoothing": 0.1}})
    p = tmp_path / "r.yaml"
    p.write_text(r.to_yaml())
    assert load_recipe(p) == r


def test_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("- just a list")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(bad)


def test_unknown_builtin_lists_known():
    with pytest.raises(RecipeError, match="digits_cnn"):
        resolve_recipe("no_such_recipe")


@pytest.mark.parametrize("name", sorted(list_builtin_recipes()))
def test_every_builtin_recipe_validates_and_names_itself(name):
    r = load_builtin_recipe(name)
    assert isinstance(r, Recipe) and r.name == name
    assert r.description


def test_builtin_recipes_reference_registered_things():
    from dltricks.data import list_datasets
    from dltricks.models import list_models

    for name in list_builtin_recipes():
        r = load_builtin_recipe(name)
        assert r.model.name in list_models(), name
        assert r.data.name in list_datasets(), name


def test_resolved_recipe_is_plain_yaml():
    r = load_builtin_recipe("digits_cnn", ["optimizer.lr=0.5"])
    assert yaml.safe_load(r.to_yaml())["optimizer"]["lr"] == 0.5
