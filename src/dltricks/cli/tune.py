"""``dltricks tune RECIPE --space SPACE.yaml``: a hyperparameter study on Optuna."""

from __future__ import annotations

from pathlib import Path

import typer

from dltricks.cli.common import console, friendly_errors


def tune(
    recipe: str = typer.Argument(..., help="built-in recipe name or path to a YAML recipe"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides of the base recipe"),
    space: Path = typer.Option(..., help="search space YAML (dotted recipe keys -> ranges)"),
    trials: int = typer.Option(20, help="finished trials the study should have in total"),
    sampler: str = typer.Option("tpe", help="random, grid, qmc, tpe, gp or cmaes"),
    pruner: str = typer.Option("none", help="none, median or hyperband (per-epoch reports)"),
    storage: str = typer.Option(None, help="RDB URL (postgresql://...) or journal file "
                                "(default: OUT/study.journal)"),
    workers: int = typer.Option(1, help="worker processes on this machine (one thread each)"),
    study: str = typer.Option(None, help="study name (default: the recipe's name)"),
    out: Path = typer.Option(Path("runs/tune"), help="output folder"),
    seed: int = typer.Option(0, help="sampler seed (worker i uses seed + i)"),
    startup_trials: int = typer.Option(None, help="random trials before tpe/gp/cmaes model "
                                       "the objective (Optuna's default: 10)"),
) -> None:
    """Tune a recipe: every trial a training run; rerun to resume; writes the best recipe,
    plots of the optimisation history and parameter importance, and a table of trials.

    Example: dltricks tune digits_cnn --space space.yaml --trials 20 --sampler tpe --workers 2
    """
    from dltricks.search.space import SpaceError
    from dltricks.search.tune import TuneConfig, load_space
    from dltricks.search.tune import tune as run_tune
    from dltricks.train.recipe import apply_overrides, builtin_recipe_path, read_recipe_dict

    with friendly_errors():
        try:
            path = Path(recipe)
            if not (path.suffix in (".yaml", ".yml") or path.is_file()):
                path = builtin_recipe_path(recipe)
            base = apply_overrides(read_recipe_dict(path), overrides or [])
            cfg = TuneConfig(base=base, space=load_space(space), out=str(out), trials=trials,
                             sampler=sampler, pruner=pruner, storage=storage, study=study,
                             seed=seed, workers=workers, startup_trials=startup_trials)
        except SpaceError as err:
            raise ValueError(str(err)) from None
        summary = run_tune(cfg)
    counts = ", ".join(f"{n} {s.lower()}" for s, n in summary["trials"].items())
    console.print(f"study {summary['study']!r} ({summary['storage']}): {counts}")
    best = summary["best"]
    if best is None:
        console.print("no trial completed yet")
        return
    console.print(f"best trial {best['number']}: val {summary['metric']} = {best['value']:.4f}")
    for k, v in best["params"].items():
        console.print(f"  {k} = {v}", highlight=False)
    console.print(f"best recipe: {out / 'best_recipe.yaml'} (train it with `dltricks train "
                  f"{out / 'best_recipe.yaml'}`)")
    console.print(f"trials: {out / 'trials.md'}; plots: {out / 'history.png'}, "
                  f"{out / 'importance.png'}")
