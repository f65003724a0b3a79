"""Experiments: arms, metrics, claims and budgets, and the registry that holds them.

An :class:`Experiment` tests one or more catalog tips by training the same base recipe under
several :class:`Arm` s (baseline vs treatment, or a sweep) over several seeds, then comparing arms
on the metrics that state the claim (:class:`Claim`, with a direction) by the rule in
:mod:`dltricks.lab.stats`. Budgets are per profile: ``smoke`` (seconds, for tests), ``quick``
(the default, >= 3 seeds) and ``full`` (more seeds and steps).

Adding an experiment is local: in a module under ``dltricks/lab/experiments/``::

    EXPERIMENTS.add("my_tip", Experiment(
        id="my_tip", tips=("catalog-id",), title="...", claim="...",
        base={"model": {...}, "data": {...}, "optimizer": {...}},
        arms=(Arm("off"), Arm("on", {"train": {"label_smoothing": 0.1}})),
        claims=(Claim("on", "off", "test_accuracy", "higher"),),
    ))

and import that module in ``dltricks/lab/experiments/__init__.py``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dltricks
from dltricks.lab.stats import Direction
from dltricks.registry import Registry

Profile = Literal["smoke", "quick", "full"]
PROFILES: tuple[str, ...] = ("smoke", "quick", "full")

#: Metrics every classification unit reports, and whether higher is better.
METRICS: dict[str, str] = {
    "test_accuracy": "accuracy on the test split after the last step",
    "test_loss": "cross-entropy on the test split after the last step",
    "test_ece": "expected calibration error (15 bins) on the test split",
    "mean_train_loss": "mean training loss over the run (area under the learning curve; "
                       "lower = faster convergence)",
    "final_train_loss": "training loss of the last logged window",
    "diverged": "1 if the loss or gradients became NaN/Inf, else 0",
    "skipped_steps": "optimizer steps skipped for NaN/Inf gradients",
    "grad_first_last_log10": "log10(grad norm of the first layer / grad norm of the last "
                             "hidden layer), mean over training; very negative = vanishing",
    "test_<name>": "any other metric the trainer reports on the test split, e.g. test_dice "
                   "(segmentation), test_token_accuracy (sequence tasks)",
    "params, macs, latency_ms": "with evaluators=('cost',): parameters, MACs of one sample's "
                                "forward, CPU latency of a 32-sample batch",
}


@dataclass(frozen=True)
class Budget:
    """How much one profile spends.

    Args:
        seeds: number of seeds per arm (0, 1, ...).
        steps: optimizer steps per run.
        data_kwargs: extra dataset kwargs for this profile (e.g. fewer samples in smoke).
    """

    seeds: int
    steps: int
    data_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.steps < 1:
            raise ValueError(f"A budget needs seeds >= 1 and steps >= 1, got {self}.")


DEFAULT_BUDGETS: dict[str, Budget] = {
    "smoke": Budget(seeds=1, steps=4),
    "quick": Budget(seeds=3, steps=300),
    "full": Budget(seeds=8, steps=1500),
}

PLOT_KINDS: tuple[str, ...] = ("curves", "bars", "by", "reliability", "grad_by_depth")

Overrides = Mapping[str, Any] | Callable[[int], Mapping[str, Any]]


@dataclass(frozen=True)
class Arm:
    """One configuration of an experiment.

    Args:
        name: short name, unique within the experiment.
        overrides: nested recipe keys merged over the experiment's base recipe, or a function
            of the run's step count returning them (for step-dependent settings such as
            schedule milestones).
        label: readable name for tables and plots (default: ``name``).
    """

    name: str
    overrides: Overrides = field(default_factory=dict)
    label: str = ""

    def resolve(self, steps: int) -> dict[str, Any]:
        o = self.overrides(steps) if callable(self.overrides) else self.overrides
        return copy.deepcopy(dict(o))

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Claim:
    """One comparison the verdict rests on: ``treatment`` vs ``baseline`` on ``metric``.

    Args:
        treatment: arm the claim is about.
        baseline: arm it is compared with.
        metric: a per-seed metric (see :data:`METRICS`).
        direction: ``"higher"`` if the claim says treatment − baseline > 0.
        primary: primary comparisons make the experiment's verdict; others are reported beside.
    """

    treatment: str
    baseline: str
    metric: str
    direction: Direction
    primary: bool = True

    @property
    def key(self) -> str:
        return f"{self.treatment}_vs_{self.baseline}:{self.metric}"


@dataclass(frozen=True)
class Experiment:
    """An ablation that tests one or more tips of the catalog.

    Args:
        id: registry name, also used in file names and ``--tips``.
        tips: catalog ids this experiment measures.
        title: short title.
        claim: the claim under test, in our words.
        base: base recipe dict (``model``, ``data``, ``optimizer``, ``schedule``, ``train``);
            ``train.steps`` and ``seed`` are set by the runner.
        arms: the configurations compared.
        claims: the comparisons that decide the verdict.
        budgets: per-profile budgets (defaults: :data:`DEFAULT_BUDGETS`).
        probes: extra measurements: ``"reliability"`` (reliability diagram on the test split),
            ``"grad_by_depth"`` (per-layer gradient norms of Linear/Conv weights).
        plots: panels of the report figure: ``"curves"``, ``"bars"`` (the first primary
            claim's metric), ``"bars:<metric>"``, ``"by:<prefix>"`` (mean and 95% CI per arm of
            the metrics named ``<prefix><number>`` against that number, e.g. ``by:acc_len`` for
            ``acc_len64``, ``acc_len128``, ...), ``"reliability"``, ``"grad_by_depth"``.
        evaluators: names in :data:`dltricks.lab.evaluators.EVALUATORS` run on the trained
            model; their numbers become metrics (e.g. ``"cost"``: params, MACs, latency).
        divergence_ok: a NaN/Inf during training is an outcome (counted in ``diverged``), not
            a crash.
        user_data: the experiment makes sense on a user's classification dataset: ``"any"``
            (flattening model), ``"image"`` (needs 2-D images), or None.
        setup: how the arms differ, in a sentence for the report.
        notes: caveats for the report.
    """

    id: str
    tips: tuple[str, ...]
    title: str
    claim: str
    base: Mapping[str, Any]
    arms: tuple[Arm, ...]
    claims: tuple[Claim, ...]
    budgets: Mapping[str, Budget] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    probes: tuple[str, ...] = ()
    plots: tuple[str, ...] = ("curves", "bars")
    evaluators: tuple[str, ...] = ()
    divergence_ok: bool = False
    user_data: Literal["any", "image"] | None = None
    setup: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"Experiment {self.id!r} has duplicate arm names: {names}.")
        for c in self.claims:
            for arm in (c.treatment, c.baseline):
                if arm not in names:
                    raise ValueError(
                        f"Experiment {self.id!r}: claim {c.key!r} names arm {arm!r}; "
                        f"arms are {names}."
                    )
        for p in self.probes:
            if p not in ("reliability", "grad_by_depth"):
                raise ValueError(f"Experiment {self.id!r}: unknown probe {p!r}.")
        for p in self.plots:
            kind = p.split(":", 1)[0]
            if kind not in PLOT_KINDS or (kind in ("by",) and ":" not in p):
                raise ValueError(f"Experiment {self.id!r}: unknown plot {p!r}; use one of "
                                 f"{PLOT_KINDS} ('by:<prefix>', 'bars:<metric>').")
        from dltricks.lab.evaluators import EVALUATORS

        unknown = [e for e in self.evaluators if e not in EVALUATORS]
        if unknown:
            raise ValueError(f"Experiment {self.id!r}: unknown evaluators {unknown}; "
                             f"registered: {EVALUATORS.names()}.")
        missing = [p for p in PROFILES if p not in self.budgets]
        if missing:
            raise ValueError(f"Experiment {self.id!r} lacks budgets for {missing}.")

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise ValueError(f"Experiment {self.id!r} has no arm {name!r}.")

    def budget(self, profile: str) -> Budget:
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
        return self.budgets[profile]

    def recipe(self, arm: str | Arm, seed: int, profile: str,
               data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The recipe dict of one run: base, then the arm's overrides, then profile and seed.

        Args:
            arm: the arm (or its name).
            seed: the run's seed (model init, data order and split).
            profile: budget profile.
            data: replaces the base's ``data.name``/``data.kwargs`` (user data).
        """
        arm = self.arm(arm) if isinstance(arm, str) else arm
        budget = self.budget(profile)
        out = copy.deepcopy(dict(self.base))
        if data is not None:
            out.setdefault("data", {})
            out["data"]["name"] = data["name"]
            out["data"]["kwargs"] = dict(data.get("kwargs", {}))
        else:
            out.setdefault("data", {}).setdefault("kwargs", {}).update(budget.data_kwargs)
        deep_merge(out, arm.resolve(budget.steps))
        train = out.setdefault("train", {})
        train.setdefault("steps", budget.steps)
        train["epochs"] = None
        train.setdefault("log_every_steps", max(1, budget.steps // 30))
        out["seed"] = seed
        out["device"] = "cpu"
        out["name"] = f"{self.id}-{arm.name}-s{seed}"
        return out

    def config(self, profile: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything that determines the results: recipes of every run, claims, probes."""
        budget = self.budget(profile)
        return {
            "id": self.id,
            "profile": profile,
            "seeds": list(range(budget.seeds)),
            "arms": [{"name": a.name, "label": a.title} for a in self.arms],
            "recipes": {a.name: self.recipe(a, 0, profile, data) for a in self.arms},
            "claims": [c.__dict__ for c in self.claims],
            "probes": list(self.probes),
            "evaluators": list(self.evaluators),
            "divergence_ok": self.divergence_ok,
        }


def deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    """Merges nested ``src`` into ``dst`` in place (dicts recursively, anything else replaced)."""
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def config_key(config: Mapping[str, Any]) -> str:
    """Hash of an experiment config and the package version: results are valid for this key."""
    blob = json.dumps({"config": config, "version": dltricks.__version__}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register_experiment(exp: Experiment) -> Experiment:
    """Adds ``exp`` to :data:`EXPERIMENTS` under its id and returns it."""
    EXPERIMENTS.add(exp.id, exp, tips=exp.tips)
    return exp


def _load() -> None:
    import dltricks.lab.experiments  # noqa: F401  (registers the built-in experiments)


def get_experiment(exp_id: str) -> Experiment:
    """The registered experiment ``exp_id``; an unknown id lists the valid ones."""
    _load()
    if exp_id not in EXPERIMENTS:
        raise ValueError(
            f"Unknown experiment {exp_id!r}; valid ids: {', '.join(EXPERIMENTS.names())}."
        )
    return EXPERIMENTS.get(exp_id)


def list_experiments() -> list[Experiment]:
    """All registered experiments, sorted by id."""
    _load()
    return [EXPERIMENTS.get(n) for n in EXPERIMENTS.names()]


__all__ = [
    "DEFAULT_BUDGETS",
    "EXPERIMENTS",
    "METRICS",
    "PROFILES",
    "Arm",
    "Budget",
    "Claim",
    "Experiment",
    "config_key",
    "deep_merge",
    "get_experiment",
    "list_experiments",
    "register_experiment",
]
