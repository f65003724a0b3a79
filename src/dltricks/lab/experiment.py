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
from pathlib import Path
from typing import Any, Literal

import dltricks
from dltricks.lab.curves import Target
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


def budgets(steps: int, seeds: int = 3, smoke_steps: int = 3) -> dict[str, Budget]:
    """Smoke: one seed, a few steps; quick: ``seeds`` x ``steps``; full: 8 seeds, 4x steps."""
    return {"smoke": Budget(seeds=1, steps=smoke_steps),
            "quick": Budget(seeds=seeds, steps=steps),
            "full": Budget(seeds=8, steps=steps * 4)}


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
        tips: the catalog tips this comparison tests (default: all of the experiment's tips).
        computed: the metric is deterministic (e.g. parameters, MACs): the difference is exact
            arithmetic, reported as "computed" and never as statistical support. Metrics in
            :data:`dltricks.lab.stats.COMPUTED_METRICS` are computed without saying so.
    """

    treatment: str
    baseline: str
    metric: str
    direction: Direction
    primary: bool = True
    tips: tuple[str, ...] = ()
    computed: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"Claim {self.key!r}: direction must be 'higher' or 'lower', got "
                             f"{self.direction!r}.")
        object.__setattr__(self, "tips", tuple(self.tips))

    @property
    def key(self) -> str:
        return f"{self.treatment}_vs_{self.baseline}:{self.metric}"

    def to_dict(self) -> dict[str, Any]:
        return {"treatment": self.treatment, "baseline": self.baseline, "metric": self.metric,
                "direction": self.direction, "primary": self.primary, "tips": list(self.tips),
                "computed": self.computed}


@dataclass(frozen=True)
class Premise:
    """A condition that must hold on the experiment's own runs for its claim to be testable.

    The premise compares, per seed, ``arm``'s ``metric`` with a constant ``value``, with another
    arm's metric (``than_arm``) or with another metric of the same arm (``than_metric``), and
    holds when the mean over seeds of ``lhs − rhs`` has the sign of ``op``. Arms are base arms;
    with a learning-rate grid the premise is read on each arm's selected rate.

    Examples::

        Premise("the baseline learns the task above chance", "plain", "test_accuracy", ">",
                value=0.2)
        Premise("the plain deep net is worse than the plain shallow one", "plain_deep",
                "test_accuracy", "<", than_arm="plain_shallow")
        Premise("the baseline is over-confident", "none", "test_confidence", ">",
                than_metric="test_accuracy")

    Args:
        text: the premise in words, for the report.
        arm: the arm it is measured on.
        metric: a per-seed metric of that arm.
        op: ``">"`` or ``"<"``.
        value: constant right-hand side.
        than_arm: right-hand side from this arm (default ``arm``).
        than_metric: right-hand side metric (default ``metric``).
    """

    text: str
    arm: str
    metric: str
    op: Literal[">", "<"]
    value: float | None = None
    than_arm: str | None = None
    than_metric: str | None = None

    def __post_init__(self) -> None:
        if self.op not in (">", "<"):
            raise ValueError(f"Premise {self.text!r}: op must be '>' or '<', got {self.op!r}.")
        other = self.than_arm is not None or self.than_metric is not None
        if (self.value is not None) == other:
            raise ValueError(f"Premise {self.text!r}: give exactly one of value, than_arm/"
                             "than_metric.")

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "arm": self.arm, "metric": self.metric, "op": self.op,
                "value": self.value, "than_arm": self.than_arm, "than_metric": self.than_metric}


def variant_name(arm: str, lr: float) -> str:
    """Name of the run arm of ``arm`` at learning rate ``lr`` (``"momentum@lr=0.1"``)."""
    return f"{arm}@lr={lr:g}"


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
        unit: for experiments that are not one Trainer run per (arm, seed) (meta-learning,
            Gaussian processes, search, compression, ...): a module-level function
            ``unit(recipe, run_dir) -> dict[str, float | None]`` called with the run's recipe
            dict (base + arm overrides + ``seed``, ``train.steps`` and ``name`` set by the
            runner; the base may hold any keys the function reads) and an empty folder it may
            write into (e.g. ``metrics.jsonl`` for curves). It returns the run's per-seed
            metrics; ``None`` marks a value that could not be measured. It must be picklable
            (module level) so that worker processes and Ray tasks can run it.
        premises: conditions measured on the experiment's own runs that must hold for the
            claim to be testable (:class:`Premise`); a failed one gives "premise not met".
        target: train to a target (:class:`~dltricks.lab.curves.Target`): the runner adds
            ``solved``, ``steps_to_target``, ``seconds_to_target``, ``best_val`` and
            ``val_at_equal_compute`` from each run's validation curve.
        lr_grid: learning rates tried for every arm (a tuple), or per arm name (a mapping; arms
            not in it run once as declared). Each arm runs once per rate as a variant arm
            (:func:`variant_name`); the analysis keeps, per arm, the rate with the best mean
            ``lr_select`` over seeds (validation data) and compares best with best on test.
            Use it where the claim compares training methods.
        lr_grid_full: rates the ``full`` profile adds to ``lr_grid`` (a tuple for every arm
            with a grid, or per arm name), e.g. two rates in quick and three in full.
        lr_key: dotted recipe key the grid sets (``"optimizer.lr"``).
        lr_select: per-unit metric that selects the rate (validation, never test).
        lr_select_mode: ``"max"`` or ``"min"`` for ``lr_select``.
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
    unit: Callable[[dict[str, Any], Path], Mapping[str, float | None]] | None = None
    premises: tuple[Premise, ...] = ()
    lr_grid: tuple[float, ...] | Mapping[str, tuple[float, ...]] = ()
    lr_grid_full: tuple[float, ...] | Mapping[str, tuple[float, ...]] = ()
    target: Target | None = None
    lr_key: str = "optimizer.lr"
    lr_select: str = "val_accuracy"
    lr_select_mode: Literal["max", "min"] = "max"

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"Experiment {self.id!r} has duplicate arm names: {names}.")
        bad = [n for n in names if "@" in n]
        if bad:
            raise ValueError(f"Experiment {self.id!r}: arm names may not contain '@': {bad}.")
        for c in self.claims:
            for arm in (c.treatment, c.baseline):
                if arm not in names:
                    raise ValueError(
                        f"Experiment {self.id!r}: claim {c.key!r} names arm {arm!r}; "
                        f"arms are {names}."
                    )
            stray = [t for t in c.tips if t not in self.tips]
            if stray:
                raise ValueError(f"Experiment {self.id!r}: claim {c.key!r} names tips {stray} "
                                 f"that the experiment does not list ({list(self.tips)}).")
        for p in self.premises:
            for arm in (p.arm, p.than_arm):
                if arm is not None and arm not in names:
                    raise ValueError(f"Experiment {self.id!r}: premise {p.text!r} names arm "
                                     f"{arm!r}; arms are {names}.")
        grid = self.lr_grid
        per_arm = dict(grid) if isinstance(grid, Mapping) else {n: tuple(grid) for n in names}
        if isinstance(self.lr_grid_full, Mapping):
            for arm in self.lr_grid_full:
                if arm not in per_arm:
                    raise ValueError(f"Experiment {self.id!r}: lr_grid_full names arm {arm!r}, "
                                     "which has no lr_grid.")
        for arm, rates in per_arm.items():
            if arm not in names:
                raise ValueError(f"Experiment {self.id!r}: lr_grid names arm {arm!r}; arms are "
                                 f"{names}.")
            rates = self.grid_for(arm, "full")
            if len(set(rates)) != len(rates) or any(not r > 0 for r in rates):
                raise ValueError(f"Experiment {self.id!r}: the learning rates of arm {arm!r} "
                                 f"must be distinct and positive, got {rates}.")
        if self.lr_select_mode not in ("max", "min"):
            raise ValueError(f"Experiment {self.id!r}: lr_select_mode must be 'max' or 'min'.")
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

    def grid_for(self, arm: str, profile: str | None = None) -> tuple[float, ...]:
        """The learning rates arm ``arm`` runs at (empty: once, as declared).

        The ``smoke`` profile (tests, seconds) runs only the first rate of each grid; ``full``
        (and ``None``: every rate any profile runs) adds ``lr_grid_full``'s rates.
        """
        if isinstance(self.lr_grid, Mapping):
            rates = tuple(self.lr_grid.get(arm, ()))
        else:
            rates = tuple(self.lr_grid)
        if rates and profile in (None, "full"):
            full = self.lr_grid_full
            extra = tuple(full.get(arm, ()) if isinstance(full, Mapping) else full)
            rates = rates + extra
        return rates[:1] if profile == "smoke" else rates

    @property
    def run_arms(self) -> tuple[Arm, ...]:
        """The arms the runner trains in quick and full: every declared arm, or one variant per
        grid rate (:meth:`run_arms_for` gives a profile's)."""
        return self.run_arms_for(None)

    def run_arms_for(self, profile: str | None) -> tuple[Arm, ...]:
        """The arms the runner trains in ``profile`` (listed in :meth:`config`).

        A variant is named :func:`variant_name` (``"momentum@lr=0.1"``) and sets ``lr_key``
        over the arm's overrides; smoke runs the first rate of each grid only.
        """
        out: list[Arm] = []
        for a in self.arms:
            rates = self.grid_for(a.name, profile)
            if not rates:
                out.append(a)
                continue
            for lr in rates:
                out.append(Arm(variant_name(a.name, lr), _with_lr(a.overrides, self.lr_key, lr),
                               f"{a.title} @ lr {lr:g}"))
        return tuple(out)

    def base_of(self, run_arm: str) -> str:
        """The declared arm a run arm belongs to."""
        return run_arm.split("@", 1)[0]

    def arm(self, name: str) -> Arm:
        for a in (*self.arms, *self.run_arms):
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
        if data is not None and data.get("max_batch_size"):
            # a small user dataset: no batch larger than its training split allows
            cap = int(data["max_batch_size"])
            out["data"]["batch_size"] = min(int(out["data"].get("batch_size", cap)), cap)
        train = out.setdefault("train", {})
        train.setdefault("steps", budget.steps)
        train["epochs"] = None
        train.setdefault("log_every_steps", max(1, budget.steps // 30))
        out["seed"] = seed
        out["device"] = out.get("device") or "cpu"  # a base may ask for cuda (compare)
        out["name"] = f"{self.id}-{arm.name}-s{seed}"
        return out

    def config(self, profile: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything that determines the results: recipes of every run, claims, probes."""
        budget = self.budget(profile)
        config = {
            "id": self.id,
            "profile": profile,
            "seeds": list(range(budget.seeds)),
            "arms": [{"name": a.name, "label": a.title, "base": self.base_of(a.name),
                      "lr": _lr_of(a.name)} for a in self.run_arms_for(profile)],
            "base_arms": [{"name": a.name, "label": a.title} for a in self.arms],
            "recipes": {a.name: self.recipe(a, 0, profile, data)
                        for a in self.run_arms_for(profile)},
            "claims": [{**c.to_dict(), "tips": list(c.tips or self.tips)} for c in self.claims],
            "premises": [p.to_dict() for p in self.premises],
            "lr_grid": {a.name: list(self.grid_for(a.name, profile)) for a in self.arms
                        if self.grid_for(a.name, profile)},
            "lr_key": self.lr_key,
            "lr_select": self.lr_select,
            "lr_select_mode": self.lr_select_mode,
            "probes": list(self.probes),
            "evaluators": list(self.evaluators),
            "divergence_ok": self.divergence_ok,
            # user data by content (name, kwargs and a hash of the files): a changed file under
            # the same path invalidates the stored results
            "data": None if data is None else dict(data),
            "target": None if self.target is None else self.target.to_dict(profile),
            "unit": None if self.unit is None
            else f"{self.unit.__module__}:{self.unit.__qualname__}",
        }
        if self.unit is not None:
            # a changed unit function, or a helper or constant of its module it uses,
            # invalidates its stored results; a recipe experiment's config has no source field
            config["unit_source"] = unit_source_hash(self.unit)
        return config


def recipe_lr(recipe: Mapping[str, Any]) -> float:
    """The learning rate a function unit trains at: ``recipe["optimizer"]["lr"]``, where the
    lab's grid sets it (``Experiment.lr_key``, default ``"optimizer.lr"``).

    Raises:
        ValueError: the recipe has no positive number there (one sentence naming what it has).
    """
    try:
        lr = float(recipe["optimizer"]["lr"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("This unit reads its learning rate from recipe['optimizer']['lr']; "
                         f"the recipe has {recipe.get('optimizer')!r}.") from None
    if not lr > 0:
        raise ValueError(f"The learning rate must be positive, got {lr}.")
    return lr


def _lr_of(run_arm: str) -> float | None:
    return float(run_arm.split("@lr=", 1)[1]) if "@lr=" in run_arm else None


def _with_lr(overrides: Overrides, key: str, lr: float) -> Overrides:
    """``overrides`` with the dotted recipe ``key`` set to ``lr`` (after the arm's own keys)."""
    path = key.split(".")

    def nest() -> dict[str, Any]:
        d: dict[str, Any] = {path[-1]: lr}
        for k in reversed(path[:-1]):
            d = {k: d}
        return d

    if callable(overrides):
        fn = overrides
        return _LrOverrides(fn, nest())
    return deep_merge(copy.deepcopy(dict(overrides)), nest())


@dataclass(frozen=True)
class _LrOverrides:
    """A step-dependent arm's overrides with a learning rate set on top (picklable)."""

    fn: Callable[[int], Mapping[str, Any]]
    extra: Mapping[str, Any]

    def __call__(self, steps: int) -> dict[str, Any]:
        return deep_merge(copy.deepcopy(dict(self.fn(steps))), self.extra)


def unit_source_hash(fn: Callable[..., Any]) -> str | None:
    """Hash of the code a function unit runs in its own module: its source, and transitively
    the source of every function and class of that module it names, and the values of the
    module-level constants it reads.

    The declarations beside it (claims, notes, other experiments) are left out, so editing
    them re-analyses the stored units (:func:`units_key`) instead of training them again;
    changing a helper or a constant the unit uses trains again. Code of other modules (the
    package's methods, torch) is not hashed: the package version covers it.

    Returns:
        16 hex digits, or None when the source is not available (then only the unit's name
        keys its results).
    """
    import inspect
    import sys
    import types

    module = sys.modules.get(fn.__module__)
    parts: list[str] = []
    seen: set[int] = set()

    def code_names(code: types.CodeType) -> set[str]:
        names = set(code.co_names)
        for const in code.co_consts:  # nested functions, lambdas, comprehensions
            if isinstance(const, types.CodeType):
                names |= code_names(const)
        return names

    def own(obj: Any) -> bool:
        return getattr(obj, "__module__", None) == fn.__module__

    def value(name: str, obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and own(obj):
            code(obj)
        elif callable(obj) or inspect.ismodule(obj):
            parts.append(f"{name}: {getattr(obj, '__module__', '')}."
                         f"{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}")
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                value(f"{name}[{k!r}]", v)
        elif isinstance(obj, list | tuple | set | frozenset):
            for i, v in enumerate(sorted(obj, key=repr) if isinstance(obj, set | frozenset)
                                  else obj):
                value(f"{name}[{i}]", v)
        else:  # a plain value; an object's default repr (an address) would change every run
            r = repr(obj)
            parts.append(f"{name} = {type(obj).__qualname__ if ' at 0x' in r else r}")

    def code(obj: Any) -> None:
        parts.append(inspect.getsource(obj))
        funcs = ([obj] if inspect.isfunction(obj) else
                 [f for f in vars(obj).values() if inspect.isfunction(f)])
        names = set().union(*(code_names(f.__code__) for f in funcs)) if funcs else set()
        for n in sorted(names):
            if module is not None and n in vars(module):
                value(n, vars(module)[n])

    try:
        code(fn)
    except (OSError, TypeError):
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    """Merges nested ``src`` into ``dst`` in place (dicts recursively, anything else replaced)."""
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def config_key(config: Mapping[str, Any], version: str | None = None) -> str:
    """Hash of an experiment config and the package version (``version``, default: this one)."""
    blob = json.dumps({"config": config, "version": version or dltricks.__version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Config fields that only the analysis reads (:func:`dltricks.lab.verdicts.analyze`): which
#: comparisons and premises decide the verdict, how a learning rate is chosen, the arms' labels.
#: No unit's result depends on them, so a change to them re-analyses stored units.
ANALYSIS_FIELDS: frozenset[str] = frozenset(
    {"claims", "premises", "lr_select", "lr_select_mode", "base_arms"})


def units_key(config: Mapping[str, Any], version: str | None = None) -> str:
    """Hash of what determines an experiment's units: its config without
    :data:`ANALYSIS_FIELDS` (recipes, seeds, probes, evaluators, data, unit source) and the
    package version. Stored units are reused while it matches."""
    return config_key({k: v for k, v in config.items() if k not in ANALYSIS_FIELDS}, version)


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register_experiment(exp: Experiment) -> Experiment:
    """Adds ``exp`` to :data:`EXPERIMENTS` under its id and returns it."""
    EXPERIMENTS.add(exp.id, exp, tips=exp.tips)
    return exp


def get_experiment(exp_id: str) -> Experiment:
    """The registered experiment ``exp_id``; an unknown id lists the valid ones."""
    if exp_id not in EXPERIMENTS:
        raise ValueError(
            f"Unknown experiment {exp_id!r}; valid ids: {', '.join(EXPERIMENTS.names())}."
        )
    return EXPERIMENTS.get(exp_id)


def list_experiments() -> list[Experiment]:
    """All registered experiments, sorted by id."""
    return [EXPERIMENTS.get(n) for n in EXPERIMENTS.names()]


__all__ = [
    "ANALYSIS_FIELDS",
    "DEFAULT_BUDGETS",
    "EXPERIMENTS",
    "METRICS",
    "PROFILES",
    "Arm",
    "Budget",
    "Claim",
    "Experiment",
    "Premise",
    "budgets",
    "config_key",
    "deep_merge",
    "get_experiment",
    "list_experiments",
    "recipe_lr",
    "register_experiment",
    "unit_source_hash",
    "units_key",
    "variant_name",
]
