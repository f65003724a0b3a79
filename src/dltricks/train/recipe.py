"""Recipes: a YAML file that says what to train and which tricks to switch on.

A recipe is validated by a pydantic schema. Unknown keys are errors that name the key and the
keys allowed at that place; ``key=value`` overrides (``optimizer.lr=0.01``) are applied before
validation, so they are checked the same way. The resolved recipe is written into every run.

Example::

    name: digits_cnn
    model: {name: small_cnn, kwargs: {channels: [32, 64]}}
    data: {name: digits, batch_size: 64}
    optimizer: {name: adamw, lr: 3.0e-3, weight_decay: 0.05}
    schedule: {name: cosine, warmup_steps: 50}
    train: {epochs: 15, label_smoothing: 0.1, clip: {mode: norm, max: 1.0}}
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dltricks.utils.io import read_mapping_file


class RecipeError(ValueError):
    """A recipe that cannot be used; the message says which key and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    """Which registered model to build; ``kwargs`` go to its constructor (dropout, norm, ...)."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class AugmentConfig(_Strict):
    """Training-time augmentation (2-D and 3-D batches), applied on the fly with kornia.

    Probabilities are per sample; a zero switches a transform off.
    """

    hflip: float = Field(0.0, ge=0, le=1, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0, le=1, description="probability of a vertical flip")
    rotation: float = Field(0.0, ge=0, le=180, description="max rotation angle in degrees")
    crop_scale: tuple[float, float] | None = Field(
        None, description="random resized crop: area scale range, e.g. [0.8, 1.0]"
    )
    intensity: float = Field(0.0, ge=0, le=1, description="brightness/contrast jitter strength")
    noise_std: float = Field(0.0, ge=0, description="std of additive Gaussian noise")
    mixup_alpha: float = Field(0.0, ge=0, description="Beta(alpha, alpha) for mixup; 0 = off")
    cutmix_alpha: float = Field(0.0, ge=0, description="Beta(alpha, alpha) for cutmix; 0 = off")
    sizes: tuple[int, ...] | None = Field(
        None, description="multi-size training (He et al. 2015): each batch is resized to a "
                          "side drawn from this list (classification), e.g. [6, 8, 12]"
    )

    @property
    def enabled(self) -> bool:
        return any(
            (self.hflip, self.vflip, self.rotation, self.crop_scale, self.intensity,
             self.noise_std, self.mixup_alpha, self.cutmix_alpha, self.sizes)
        )


class DataConfig(_Strict):
    """Which registered dataset to use; ``kwargs`` go to its builder (size, noise, path, ...)."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(64, gt=0, description="global batch size (all processes together)")
    eval_batch_size: int | None = Field(None, gt=0)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class OptimizerConfig(_Strict):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD and RMSprop momentum")
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    alpha: float = Field(0.99, gt=0, lt=1, description="RMSprop smoothing constant")
    no_decay_bias_norm: bool = Field(
        True, description="exclude biases and normalization parameters from weight decay"
    )

    @model_validator(mode="after")
    def _check_nesterov(self) -> OptimizerConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        return self


class ScheduleConfig(_Strict):
    """Learning-rate schedule, stepped once per optimizer step.

    ``lr`` of the optimizer is the peak value. Linear warmup from ``warmup_start_factor * lr``
    over ``warmup_steps`` precedes any schedule; the schedule then runs over the remaining steps.
    """

    name: Literal["constant", "step", "multistep", "cosine", "onecycle"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    warmup_start_factor: float = Field(0.0, ge=0, le=1)
    step_size: int | None = Field(None, gt=0, description="step: decay every this many steps")
    milestones: list[int] = Field(default_factory=list, description="multistep: decay steps")
    gamma: float = Field(0.1, gt=0, le=1, description="step/multistep decay factor")
    min_factor: float = Field(0.0, ge=0, le=1, description="cosine: final lr / peak lr")
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: fraction spent rising")
    div_factor: float = Field(25.0, ge=1, description="onecycle: peak lr / initial lr")
    final_div_factor: float = Field(1e4, ge=1, description="onecycle: initial lr / final lr")

    @model_validator(mode="after")
    def _check_fields(self) -> ScheduleConfig:
        if self.name == "step" and self.step_size is None:
            raise ValueError("schedule 'step' needs step_size")
        if self.name == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones")
        if self.milestones != sorted(self.milestones):
            raise ValueError("milestones must be increasing")
        return self


class ClipConfig(_Strict):
    mode: Literal["none", "norm", "value"] = "none"
    max: float = Field(1.0, gt=0, description="max total L2 norm (norm) or max |g| (value)")


class EMAConfig(_Strict):
    enabled: bool = False
    decay: float = Field(0.999, gt=0, lt=1)


class EarlyStoppingConfig(_Strict):
    patience: int | None = Field(None, gt=0, description="evaluations without improvement")
    min_delta: float = Field(0.0, ge=0)


class CheckpointConfig(_Strict):
    """When checkpoints are written and what their weights files hold.

    An epoch's end is checkpointed every ``every_epochs`` epochs, and always at the end of
    training, when early stopping stops it, and when the validation value of ``train.monitor``
    improves (so the best checkpoint always exists). A crash between two checkpoints costs the
    epochs since the newest; resuming replays them exactly.
    """

    every_steps: int | None = Field(None, gt=0, description="also checkpoint every N steps")
    every_epochs: int = Field(
        1, gt=0, description="checkpoint every N epoch ends (and always at the last epoch, on "
                             "early stopping and when the monitored metric improves)"
    )
    keep_last: int = Field(2, ge=1, description="how many recent checkpoints to keep")
    trainable_only: bool = Field(
        False, description="weights files hold only parameters with requires_grad=True and the "
                           "buffers; the frozen ones are rebuilt from the recipe and checked "
                           "against a fingerprint on load (LoRA, linear probes)"
    )


class TrainConfig(_Strict):
    epochs: int | None = Field(10, gt=0)
    steps: int | None = Field(None, gt=0, description="optimizer steps; overrides epochs")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    clip: ClipConfig = Field(default_factory=ClipConfig)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    dice_weight: float = Field(1.0, ge=0, description="segmentation: weight of Dice in Dice+CE")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    ema: EMAConfig = Field(default_factory=EMAConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    monitor: str | None = Field(
        None, description="validation metric for best checkpoint and early stopping"
    )
    nonfinite: Literal["error", "skip"] = Field(
        "error", description="on NaN/Inf loss or gradients: stop with an error, or skip the step"
    )
    deterministic: bool = True
    eval_every_epochs: int = Field(1, gt=0)
    log_every_steps: int = Field(50, gt=0, description="train log record every N steps")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @model_validator(mode="after")
    def _check_length(self) -> TrainConfig:
        if self.epochs is None and self.steps is None:
            raise ValueError("set train.epochs or train.steps")
        return self


class TermConfig(_Strict):
    """An extra loss term added to the task loss (distillation, pseudo-labels, DANN, ...).

    ``name`` resolves through :func:`dltricks.train.terms.resolve_term` (entry points of group
    ``dltricks.terms`` and terms registered in-process); ``kwargs`` go to its constructor and
    are checked against its signature when the run is built.
    """

    name: str
    weight: float = Field(1.0, ge=0, description="multiplies the term's loss in the total "
                          "(0: computed and logged only, never added to the loss)")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Recipe(_Strict):
    """A whole training recipe."""

    name: str = "unnamed"
    description: str = ""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    objectives: list[TermConfig] = Field(
        default_factory=list, description="extra loss terms added to the task loss"
    )

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if not out["objectives"]:  # plain recipes keep the shape they always had
            out.pop("objectives")
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------- loading, overrides


def _allowed_keys(loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the schema section at ``loc`` (a pydantic error location)."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list section (objectives[0])
            continue
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        args = get_args(ann)
        if get_origin(ann) is list and args:
            ann = args[0]
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return list(model.model_fields)


def _list_key(loc: tuple[Any, ...]) -> str:
    """``objectives[1].nme`` for a pydantic location ``('objectives', 1, 'nme')``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def format_validation_error(err: ValidationError, source: str = "recipe") -> str:
    """Turns a pydantic error into sentences that name each bad key and what is allowed."""
    lines = [f"Invalid {source}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = _list_key(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            extra = f" Allowed keys here: {', '.join(allowed)}." if allowed else ""
            lines.append(f"  - unknown key '{key}'.{extra}")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key '{key}'.")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  - '{key}': {e['msg']}{got_s}.")
    return "\n".join(lines)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides to a nested dict; values are parsed as YAML.

    ``optimizer.lr=1e-2``, ``train.clip.mode=norm``, ``data.kwargs.n_samples=2000``,
    ``schedule.milestones=[100,200]``.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"Override {item!r} is not of the form key=value.")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError(f"Override {item!r} has an empty key.")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise RecipeError(f"Override {item!r}: the value is not valid YAML ({exc}).") from None
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise RecipeError(f"Override {item!r}: '{p}' is a value, not a section.")
            node = nxt
        node[parts[-1]] = value
    return out


def recipe_from_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validates a dict into a :class:`Recipe`, raising :class:`RecipeError` with readable text."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a mapping, got {type(data).__name__}.")
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, source)) from None


def read_recipe_dict(path: str | Path) -> dict[str, Any]:
    """Reads a recipe YAML file into a plain dict (no validation)."""
    return read_mapping_file(path, "Recipe file", RecipeError)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Loads, overrides and validates a recipe file."""
    data = apply_overrides(read_recipe_dict(path), overrides or [])
    return recipe_from_dict(data, source=f"recipe {str(path)!r}")


# --------------------------------------------------------------------------- built-in recipes

_BUILTIN_DIR = Path(__file__).resolve().parent.parent / "recipes"


def list_builtin_recipes() -> dict[str, str]:
    """Built-in recipe names and their one-line descriptions."""
    out = {}
    for path in sorted(_BUILTIN_DIR.glob("*.yaml")):
        data = read_recipe_dict(path)
        out[path.stem] = str(data.get("description", "")).strip().splitlines()[0:1]
        out[path.stem] = out[path.stem][0] if out[path.stem] else ""
    return out


def builtin_recipe_path(name: str) -> Path:
    """The YAML file of a built-in recipe; an unknown name lists the known ones."""
    path = _BUILTIN_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_builtin_recipes()) or "(none)"
        raise RecipeError(f"Unknown recipe {name!r}: not a file and not a built-in ({known}).")
    return path


def resolve_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Loads a recipe from a YAML path, or a built-in recipe by name, with overrides."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        return load_recipe(p, overrides)
    return load_recipe(builtin_recipe_path(str(name_or_path)), overrides)


def load_builtin_recipe(name: str, overrides: list[str] | None = None) -> Recipe:
    """A built-in recipe by name, validated, with optional ``key=value`` overrides."""
    return load_recipe(builtin_recipe_path(name), overrides)
