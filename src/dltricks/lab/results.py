"""Typed lab results: one unit's result, an arm's analysis, an experiment's result.

Stored results (``OUT/results/<experiment>.json``) are validated by these pydantic models when
they are loaded (:func:`load_result_file`) and written from them (:func:`dump_result`), so a
reader that misspells a field fails loudly instead of reading "missing" data. The models accept
extra keys (a newer runner may store more), but every field a reader uses is declared here with
its type. Non-finite floats are stored as ``NaN``/``Infinity`` (Python's JSON), as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Number = float | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def __getitem__(self, key: str) -> Any:  # read-only dict-style access for old readers
        try:
            return getattr(self, key)
        except AttributeError as err:
            raise KeyError(key) from err

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class UnitResult(_Model):
    """One (arm, seed) run: metrics (per-seed numbers), curves, probes, timings.

    ``metrics`` holds ``test_<name>`` and other per-seed numbers; ``val_<name>`` (the last
    validation evaluation) selects learning rates; ``diverged`` is 1.0 for a failed run.
    ``status`` is ``"error"`` for a run that raised (with ``error`` and ``traceback``).
    """

    arm: str
    seed: int
    status: Literal["ok", "error"]
    metrics: dict[str, Number] = Field(default_factory=dict)
    note: str | None = None
    curves: dict[str, list[list[Any]]] = Field(default_factory=dict)
    probes: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    steps: int | None = None
    num_params: int | None = None
    run_dir: str | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def failed(self) -> bool:
        """The run diverged (its metrics count as the worst value, never dropped)."""
        return self.metrics.get("diverged") == 1.0


class MetricStats(_Model):
    """One metric of one arm over seeds (``values`` aligned with the config's seeds)."""

    values: list[Number]
    mean: Number = None
    std: Number = None
    n: int = 0


class ArmAnalysis(_Model):
    """An arm's per-metric statistics; with a learning-rate grid, on its selected rate."""

    label: str
    n_ok: int
    n_failed: int = 0
    failed_seeds: list[int] = Field(default_factory=list)
    metrics: dict[str, MetricStats] = Field(default_factory=dict)
    seconds: float = 0.0
    variant: str | None = None
    base: str | None = None
    lr: float | None = None


class ComparisonResult(_Model):
    """One claim's comparison (:class:`dltricks.lab.stats.Comparison` plus the claim)."""

    treatment: str
    baseline: str
    metric: str
    primary: bool
    tips: list[str] = Field(default_factory=list)
    verdict: str
    kind: str = "paired"
    diff: Number = None
    ci_low: Number = None
    ci_high: Number = None
    p_value: Number = None
    n_pairs: int = 0
    direction: Literal["higher", "lower"]
    mean_treatment: Number = None
    mean_baseline: Number = None
    values_treatment: list[float] = Field(default_factory=list)
    values_baseline: list[float] = Field(default_factory=list)
    failed_treatment: int = 0
    failed_baseline: int = 0
    sd_diff: Number = None
    effect_size: Number = None
    mde: Number = None
    welch_low: Number = None
    welch_high: Number = None
    welch_verdict: str = "n/a"
    hedges_g: Number = None
    p_fisher: Number = None
    confidence: float = 0.95
    treatment_arm: str | None = None
    baseline_arm: str | None = None
    treatment_lr: float | None = None
    baseline_lr: float | None = None
    p_holm: Number = None
    verdict_holm: str | None = None


class GridPoint(_Model):
    lr: float
    arm: str
    values: list[Number] = Field(default_factory=list)
    val_mean: Number = None
    n: int = 0
    n_failed: int = 0


class LrSelection(_Model):
    """A base arm's learning-rate grid, each rate's validation mean and the chosen rate."""

    metric: str
    mode: Literal["max", "min"]
    grid: list[GridPoint]
    rates: list[float]
    chosen_lr: float | None
    chosen_arm: str | None
    selected_on_validation: bool


class PremiseResult(_Model):
    text: str
    arm: str
    metric: str
    op: Literal[">", "<"]
    value: float | None = None
    than_arm: str | None = None
    than_metric: str | None = None
    holds: bool | None = None
    mean_diff: Number = None
    lhs_mean: Number = None
    rhs_mean: Number = None
    n: int = 0
    numbers: str = ""


class UnitError(_Model):
    arm: str
    seed: int
    error: str


class Analysis(_Model):
    """The analysis of one experiment (:func:`dltricks.lab.verdicts.analyze`)."""

    arms: dict[str, ArmAnalysis] = Field(default_factory=dict)
    variants: dict[str, ArmAnalysis] = Field(default_factory=dict)
    lr_selection: dict[str, LrSelection] = Field(default_factory=dict)
    premises: list[PremiseResult] = Field(default_factory=list)
    premises_met: bool | None = None
    comparisons: list[ComparisonResult] = Field(default_factory=list)
    verdict: str
    errors: list[UnitError] = Field(default_factory=list)
    rule: str = ""


class ExperimentResult(_Model):
    """One experiment's stored result file.

    ``machine`` is what :func:`dltricks.lab.runner` recorded when the experiment ran (platform,
    CPU count, torch threads, load average); ``execution`` how (workers, Ray address).
    """

    id: str
    status: Literal["partial", "complete", "error"]
    key: str | None = None  # hash of the whole config (experiment.config_key)
    units_key: str | None = None  # what the stored units are valid for (experiment.units_key)
    profile: str | None = None
    tips: list[str] = Field(default_factory=list)
    title: str = ""
    claim: str = ""
    setup: str = ""
    notes: str = ""
    plots: list[str] = Field(default_factory=list)
    config: dict[str, Any] | None = None
    versions: dict[str, Any] = Field(default_factory=dict)
    machine: dict[str, Any] | None = None
    execution: dict[str, Any] | None = None
    units: dict[str, UnitResult] = Field(default_factory=dict)
    analysis: Analysis | None = None
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    traceback: str | None = None


class ResultError(ValueError):
    """A stored result that does not match :class:`ExperimentResult`."""


def parse_result(data: Any) -> ExperimentResult:
    """Validates a result dict; raises :class:`ResultError` naming the first bad field."""
    try:
        return ExperimentResult.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ResultError(f"Stored lab result is invalid at {where!r}: {first['msg']}.") from err


def load_result_file(path: str | Path) -> ExperimentResult:
    """Reads and validates one result file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ResultError: the file is not JSON (e.g. torn by a kill) or not a valid result.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultError(f"{str(path)!r} is not valid JSON: {err}.") from err
    return parse_result(data)


def dump_result(result: ExperimentResult | dict[str, Any]) -> str:
    """The JSON text of a result, validated first (a dict is parsed into the model)."""
    model = result if isinstance(result, ExperimentResult) else parse_result(result)
    return json.dumps(model.model_dump(mode="python", exclude_none=False), indent=1, default=str)


__all__ = [
    "Analysis",
    "ArmAnalysis",
    "ComparisonResult",
    "ExperimentResult",
    "GridPoint",
    "LrSelection",
    "MetricStats",
    "PremiseResult",
    "ResultError",
    "UnitError",
    "UnitResult",
    "dump_result",
    "load_result_file",
    "parse_result",
]
