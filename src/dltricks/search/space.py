"""Search spaces: which recipe keys a study varies, over which ranges, checked against the schema.

A space is a YAML file::

    metric: accuracy          # validation metric to optimise (default: the recipe's monitor)
    direction: maximize       # default: minimize for loss-like metrics, else maximize
    params:
      optimizer.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}
      optimizer.weight_decay: {type: float, low: 0.0, high: 0.1, step: 0.05}
      data.batch_size: {type: categorical, choices: [32, 64, 128]}
      model.kwargs.channels: {type: categorical, choices: [[16, 32], [32, 64]]}
      model.kwargs.kernel_size: {type: int, low: 3, high: 7, step: 2}

Each key is a dotted recipe key (any key a ``key=value`` override can set). :meth:`SearchSpace.
validate` checks every key against the recipe schema (:mod:`dltricks.train.recipe`), and every
``model.kwargs.*`` key against the model's constructor, so a typo is an error that names the key
and the keys allowed there, before any trial runs; it then validates the recipe at the ends of
every range and at every choice, so a range the schema rejects (a negative learning rate) fails
early too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dltricks.train.recipe import Recipe, RecipeError, apply_overrides, recipe_from_dict
from dltricks.utils.io import read_mapping_file

#: Validation metrics where lower is better (the trainer's convention).
LOWER_IS_BETTER = ("loss", "nll", "ece")


class SpaceError(ValueError):
    """A search space that cannot be used; the message names the key and why."""


class ParamSpec(BaseModel):
    """One searched key: a float or int range, or a list of choices."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes 'choices', not low/high")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"low {self.low} is above high {self.high}")
            if self.log and self.low <= 0:
                raise ValueError("a log-scaled range needs low > 0")
            if self.log and self.step is not None:
                raise ValueError("'log' and 'step' cannot be combined")
            if self.choices is not None:
                raise ValueError(f"a {self.type} parameter takes low/high, not 'choices'")
            if self.type == "int" and not (float(self.low).is_integer()
                                           and float(self.high).is_integer()):
                raise ValueError("an int parameter needs integer low and high")
        return self

    def edge_values(self) -> list[Any]:
        """Values to validate the recipe with: the ends of a range, or every choice."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def grid(self) -> list[Any]:
        """Every value of a finite parameter (choices, ints, stepped floats).

        Raises:
            SpaceError: a continuous float range (the grid sampler needs finite values).
        """
        if self.type == "categorical":
            return list(self.choices or [])
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step is None:
            raise SpaceError("the grid sampler needs finite values: give float ranges a 'step'.")
        n = round((self.high - self.low) / self.step)
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


class _SpaceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    params: dict[str, ParamSpec]


def _schema_path_error(key: str, recipe: dict[str, Any]) -> str | None:
    """Why ``key`` is not a recipe key (None if it is one)."""
    parts = key.split(".")
    model: type[BaseModel] = Recipe
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            return (f"unknown key '{key}': '{part}' is not a key of {where}. Allowed keys "
                    f"there: {', '.join(fields)}.")
        ann = fields[part].annotation
        rest = parts[i + 1:]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if not rest:
                return f"'{key}' is a section, not a value; search one of its keys."
            model = ann
            continue
        if rest and part == "kwargs" and parts[0] == "model":
            return _model_kwarg_error(key, rest, recipe)
        if rest and part != "kwargs":
            return f"unknown key '{key}': '{part}' is a value, not a section."
        return None
    return None


def _model_kwarg_error(key: str, rest: list[str], recipe: dict[str, Any]) -> str | None:
    from dltricks.models.registry import model_signature

    name = recipe.get("model", {}).get("name")
    if not isinstance(name, str):
        return None
    try:
        sig = model_signature(name)
    except KeyError:
        return None  # the recipe check names the unknown model
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    if rest[0] not in params:
        return (f"unknown key '{key}': model {name!r} takes no argument '{rest[0]}'. Its "
                f"arguments: {', '.join(params)}.")
    return None


class SearchSpace:
    """A validated mapping of dotted recipe keys to :class:`ParamSpec`.

    Args:
        params: dotted key -> spec (or spec dict).
        metric: validation metric the study optimises (None: the recipe's monitor).
        direction: ``"maximize"`` or ``"minimize"`` (None: from the metric's name).
    """

    def __init__(self, params: dict[str, ParamSpec | dict[str, Any]], metric: str | None = None,
                 direction: str | None = None) -> None:
        if not params:
            raise SpaceError("A search space needs at least one parameter under 'params'.")
        try:
            self.params = {k: v if isinstance(v, ParamSpec) else ParamSpec.model_validate(v)
                           for k, v in params.items()}
        except ValidationError as err:
            raise SpaceError(_format(err)) from None
        self.metric = metric.removeprefix("val/") if metric else None
        if direction not in (None, "maximize", "minimize"):
            raise SpaceError(f"direction must be 'maximize' or 'minimize', got {direction!r}.")
        self._direction = direction

    @classmethod
    def from_dict(cls, data: Any, source: str = "search space") -> SearchSpace:
        if not isinstance(data, dict):
            raise SpaceError(f"{source}: must be a mapping with a 'params' section.")
        try:
            f = _SpaceFile.model_validate(data)
        except ValidationError as err:
            raise SpaceError(_format(err, source)) from None
        return cls(dict(f.params), f.metric, f.direction)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        data = read_mapping_file(path, "Search space file", SpaceError)
        return cls.from_dict(data, f"search space {str(Path(path))!r}")

    def direction_for(self, metric: str) -> str:
        """The study direction: the space's, or minimize for loss-like metrics."""
        if self._direction:
            return self._direction
        return "minimize" if metric in LOWER_IS_BETTER else "maximize"

    def validate(self, base: dict[str, Any]) -> None:
        """Checks every key against the recipe schema and every edge value against the recipe.

        Raises:
            SpaceError: naming the first bad key (and the allowed keys there) or value.
        """
        for key, spec in self.params.items():
            why = _schema_path_error(key, base)
            if why:
                raise SpaceError(why)
            for value in spec.edge_values():
                data = self.apply(base, {key: value})
                try:
                    recipe_from_dict(data, source=f"recipe with {key}={value!r}")
                except RecipeError as err:
                    raise SpaceError(f"search space key '{key}': the value {value!r} gives an "
                                     f"invalid recipe. {err}") from None

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draws one value per key from an Optuna trial."""
        out: dict[str, Any] = {}
        for key, s in self.params.items():
            if s.type == "float":
                out[key] = trial.suggest_float(key, s.low, s.high, log=s.log, step=s.step)
            elif s.type == "int":
                out[key] = trial.suggest_int(key, int(s.low), int(s.high), log=s.log,
                                             step=int(s.step or 1))
            else:
                labels = [_label(c) for c in s.choices or []]
                picked = trial.suggest_categorical(key, labels)
                out[key] = (s.choices or [])[labels.index(picked)]
        return out

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored params (choices as labels) back to recipe values."""
        out = {}
        for key, value in params.items():
            s = self.params.get(key)
            if s is not None and s.type == "categorical":
                labels = [_label(c) for c in s.choices or []]
                value = (s.choices or [])[labels.index(value)] if value in labels else value
            out[key] = value
        return out

    def grid(self) -> dict[str, list[Any]]:
        """Finite values per key, labelled as :meth:`suggest` labels them (grid sampler)."""
        out = {}
        for key, s in self.params.items():
            values = s.grid()
            out[key] = [_label(v) for v in values] if s.type == "categorical" else values
        return out

    @staticmethod
    def apply(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """``base`` with the dotted keys set (a copy)."""
        return apply_overrides(base, [f"{k}={_yaml_value(v)}" for k, v in values.items()])


def _label(value: Any) -> str | int | float | bool | None:
    """Optuna stores categorical choices as scalars: lists and dicts become their YAML text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip()


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _format(err: ValidationError, source: str = "search space") -> str:
    lines = [f"Invalid {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}'.")
        else:
            lines.append(f"  - '{key}': {e['msg']}.")
    return "\n".join(lines)


__all__ = ["ParamSpec", "SearchSpace", "SpaceError"]
