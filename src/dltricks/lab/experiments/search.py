"""Experiments on the guide's Hyperparameter Tuning and Neural Architecture Search tips.

* ``hparam_search``: random search (Bergstra & Bengio 2012) against Bayesian optimisation (TPE,
  Bergstra et al. 2011; a Gaussian process, Snoek et al. 2012) at the same number of trials, and
  against no tuning at all (the defaults), tuning learning rate, weight decay, width and dropout
  of an MLP on digits. Every trial is a short training; its value the validation accuracy.
* ``nas_strategies``: regularized evolution (Real et al. 2019) and a REINFORCE controller (Zoph
  & Le 2017) against random search (the baseline NAS must beat; Li & Talwalkar 2019) at the same
  number of candidate evaluations over the space of :mod:`dltricks.search.nas`, and the best
  found architecture against a hand-designed one of the same space.

Both are paired by seed: at seed s every arm sees the same data split and trains every
candidate from the same initial seed. The curves of the report are best-so-far validation
accuracy against trials (``metrics.jsonl``, ``split=val``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dltricks.lab.experiment import Arm, Budget, Claim, Experiment, Premise, register_experiment


def _budgets(quick: int, smoke: int, seeds: int = 3) -> dict[str, Budget]:
    """``steps`` is the number of trials (or candidate evaluations) of one search."""
    return {"smoke": Budget(seeds=1, steps=smoke), "quick": Budget(seeds=seeds, steps=quick),
            "full": Budget(seeds=8, steps=quick * 2)}


def _write_best_so_far(run_dir: Path, values: list[float]) -> None:
    best = -math.inf
    with open(run_dir / "metrics.jsonl", "w") as f:
        for i, v in enumerate(values):
            best = max(best, v)
            f.write(json.dumps({"split": "val", "step": i + 1, "score": best}) + "\n")


# --------------------------------------------------------------------------- hyperparameters

DEFAULTS = {"lr": 1e-3, "weight_decay": 0.0, "width": 64, "dropout": 0.0}


def _train_mlp(data: Any, hp: dict[str, Any], steps: int, seed: int) -> tuple[float, float]:
    """(validation accuracy, test accuracy) of a 2-layer MLP trained ``steps`` AdamW steps."""
    from dltricks.models import create_model

    torch.manual_seed(seed)
    model = create_model("mlp", in_features=64, num_classes=10, hidden=[hp["width"]] * 2,
                         dropout=hp["dropout"])
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    x, y = data.train.x.flatten(1), data.train.y
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        val = float((model(data.val.x.flatten(1)).argmax(-1) == data.val.y).float().mean())
        test = float((model(data.test.x.flatten(1)).argmax(-1) == data.test.y).float().mean())
    if not math.isfinite(val):
        val = 0.0
    return val, test


def hparam_unit(recipe: dict[str, Any], run_dir: Path) -> dict[str, float | None]:
    """One search of ``train.steps`` trials with the arm's sampler (or the defaults alone)."""
    import warnings

    import optuna

    from dltricks.data import create_dataset

    seed, trials, sampler = recipe["seed"], recipe["train"]["steps"], recipe["sampler"]
    inner = int(recipe["inner_steps"])
    data = create_dataset("digits", seed=seed)
    if sampler == "default":
        val, test = _train_mlp(data, DEFAULTS, inner, seed)
        _write_best_so_far(run_dir, [val])
        return {"best_val": val, "best_val_half": val, "test_accuracy": test}
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GP: "greenlet unavailable" notice
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    startup = max(2, trials // 4)
    samplers = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                                  multivariate=True),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup),
    }
    study = optuna.create_study(direction="maximize", sampler=samplers[sampler]())
    tests: dict[int, float] = {}

    def objective(trial: optuna.Trial) -> float:
        hp = {"lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
              "weight_decay": trial.suggest_float("weight_decay", 1e-6, 0.3, log=True),
              "width": trial.suggest_categorical("width", [16, 32, 64, 128]),
              "dropout": trial.suggest_float("dropout", 0.0, 0.5)}
        val, tests[trial.number] = _train_mlp(data, hp, inner, seed)
        return val

    study.optimize(objective, n_trials=trials)
    values = [t.value if t.value is not None else 0.0 for t in study.trials]
    _write_best_so_far(run_dir, values)
    half = values[: max(1, trials // 2)]
    return {"best_val": study.best_value, "best_val_half": max(half),
            "test_accuracy": tests[study.best_trial.number],
            "mean_trial_val": sum(values) / len(values)}


register_experiment(Experiment(
    id="hparam_search",
    tips=("hparam-search-methods", "hparam-explore"),
    title="Random search vs Bayesian optimisation (TPE, GP) at equal trials, and vs defaults",
    claim="Tuning learning rate, weight decay, width and dropout beats the defaults; Bayesian "
          "optimisation (TPE, Gaussian process) finds better settings than random search with "
          "the same number of trials.",
    setup="digits, MLP (two hidden layers), each trial 80 AdamW steps (batch 64) from the "
          "seed's initialisation, value = validation accuracy. Space: lr 1e-4..1 (log), weight "
          "decay 1e-6..0.3 (log), width {16, 32, 64, 128}, dropout 0..0.5. Equal budgets: "
          "steps = trials per search (quick 20); TPE and GP start from trials/4 random "
          "trials. The selected setting's test accuracy is the held-out check. Defaults: lr "
          "1e-3, no weight decay, width 64, no dropout.",
    base={"inner_steps": 80},
    arms=(Arm("default", {"sampler": "default"}, "defaults (no search)"),
          Arm("random", {"sampler": "random"}, "random search"),
          Arm("tpe", {"sampler": "tpe"}, "TPE"),
          Arm("gp", {"sampler": "gp"}, "GP (Bayesian)")),
    claims=(Claim("tpe", "random", "best_val", "higher", tips=("hparam-search-methods",)),
            Claim("gp", "random", "best_val", "higher", tips=("hparam-search-methods",)),
            Claim("random", "default", "test_accuracy", "higher", tips=("hparam-explore",)),
            Claim("tpe", "random", "best_val_half", "higher", primary=False,
                  tips=("hparam-search-methods",)),
            Claim("tpe", "random", "test_accuracy", "higher", primary=False,
                  tips=("hparam-search-methods",))),
    premises=(Premise("random search finds a setting that learns the task (validation "
                      "accuracy above 0.5; chance 0.1)", "random", "best_val", ">", value=0.5),),
    budgets=_budgets(quick=20, smoke=3),
    plots=("curves", "bars", "bars:test_accuracy"),
    unit=hparam_unit,
    notes="Curves: best validation accuracy so far against trials. The search space and the "
          "80-step trial length were fixed before any run. The GP sampler costs most of the "
          "experiment's CPU time (a GP fit per trial).",
))


# --------------------------------------------------------------------------- architectures

#: A hand-designed candidate of the same space: two plain 3x3 stages of 16 channels.
HANDMADE = {"kernel_size": 3, "dilation": 1, "width": 16, "depth": 1, "separable": False,
            "se": False, "skip": False}


def nas_space() -> Any:
    from dltricks.search.nas import NASSpace

    return NASSpace(widths=(4, 8, 16), depths=(1, 2))


def handmade_arch(space: Any) -> tuple[int, ...]:
    """Decision indices of :data:`HANDMADE` in every stage."""
    return tuple(c.index(HANDMADE[name.split(".", 1)[1]]) for name, c in space.decisions())


def nas_unit(recipe: dict[str, Any], run_dir: Path) -> dict[str, float | None]:
    """One architecture search of ``train.steps`` evaluations with the arm's strategy."""
    from dltricks.data import create_dataset
    from dltricks.search.nas import Evaluator, SearchResult, run_search

    seed, budget, strategy = recipe["seed"], recipe["train"]["steps"], recipe["strategy"]
    space = nas_space()
    data = create_dataset("digits", seed=seed)
    evaluate = Evaluator(space, data, steps=int(recipe["proxy_steps"]), seed=seed)
    if strategy == "handmade":
        arch = handmade_arch(space)
        result = SearchResult("handmade", [{"arch": list(arch), **evaluate(arch)}])
    else:
        extra = ({"population": max(2, budget // 3), "sample": 2} if strategy == "evolution"
                 else {})
        result = run_search(strategy, space, evaluate, budget, seed=seed, **extra)
    _write_best_so_far(run_dir, [r["val_accuracy"] for r in result.history])
    best = result.best
    return {"best_val": best["val_accuracy"], "test_accuracy": best["test_accuracy"],
            "best_macs": best["macs"], "best_params": best["params"],
            "distinct": float(len({tuple(r["arch"]) for r in result.history}))}


register_experiment(Experiment(
    id="nas_strategies",
    tips=("nas-methods", "nas-automates"),
    title="NAS: regularized evolution and REINFORCE vs random search, and vs a hand design",
    claim="Evolutionary and reinforcement-learning architecture search find better "
          "architectures than random search with the same number of evaluations, and NAS "
          "finds a better architecture than a hand-designed one of the same space.",
    setup="digits; space: 2 stages x (kernel {3, 5}, dilation {1, 2}, width {4, 8, 16}, depth "
          "{1, 2}, depthwise separable, SE, skip) = 36,864 architectures; each candidate "
          "trained 40 AdamW steps (proxy), scored by validation accuracy; equal budgets "
          "(steps = evaluations per search, quick 12). Evolution: population budget/3, "
          "tournament 2, aging. REINFORCE: LSTM controller, Adam 0.05, moving-average "
          "baseline 0.8. Hand design: two plain 3x3 stages of 16 channels.",
    base={"proxy_steps": 40},
    arms=(Arm("handmade", {"strategy": "handmade"}, "hand-designed"),
          Arm("random", {"strategy": "random"}, "random search"),
          Arm("evolution", {"strategy": "evolution"}, "regularized evolution"),
          Arm("reinforce", {"strategy": "reinforce"}, "REINFORCE controller")),
    claims=(Claim("evolution", "random", "best_val", "higher", tips=("nas-methods",)),
            Claim("reinforce", "random", "best_val", "higher", tips=("nas-methods",)),
            Claim("evolution", "handmade", "test_accuracy", "higher", tips=("nas-automates",)),
            Claim("random", "handmade", "test_accuracy", "higher", primary=False,
                  tips=("nas-automates",))),
    premises=(Premise("the hand-designed network learns the task above chance (test accuracy "
                      "> 0.2)", "handmade", "test_accuracy", ">", value=0.2),),
    budgets=_budgets(quick=12, smoke=2),
    plots=("curves", "bars", "bars:test_accuracy"),
    unit=nas_unit,
    notes="Curves: best validation accuracy so far against evaluations. With budgets this "
          "small (12 of 36,864 architectures) the strategies barely leave their random start: "
          "the published gaps (Real et al. 2019) need thousands of evaluations. The space, "
          "proxy length and strategy settings were fixed before any run.",
))
