"""``dltricks recipes`` and ``dltricks schedule plot``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dltricks.cli.common import console, friendly_errors

schedule_app = typer.Typer(help="Learning-rate schedules.", no_args_is_help=True)


def recipes(
    show: str = typer.Option(None, help="print one recipe's resolved YAML"),
) -> None:
    """List the built-in recipes (or show one)."""
    from dltricks.train.recipe import list_builtin_recipes, load_builtin_recipe

    with friendly_errors():
        if show:
            console.print(load_builtin_recipe(show).to_yaml(), highlight=False)
            return
        table = Table(title="built-in recipes (dltricks train NAME)")
        table.add_column("name")
        table.add_column("description")
        for name, desc in list_builtin_recipes().items():
            table.add_row(name, desc)
    console.print(table)


@schedule_app.command("plot")
def plot(
    recipe: str = typer.Argument(..., help="built-in recipe name or path"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
    steps: int = typer.Option(None, help="total optimizer steps (default: from the recipe)"),
    out: Path = typer.Option(Path("schedule.png"), help="PNG path"),
) -> None:
    """Draw a recipe's learning-rate curve over its optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dltricks.data import create_dataset
    from dltricks.train.recipe import resolve_recipe
    from dltricks.train.schedules import lr_curve

    with friendly_errors():
        r = resolve_recipe(recipe, overrides or [])
        total = steps or r.train.steps
        if total is None:
            n_train = len(create_dataset(r.data.name, seed=r.seed, **r.data.kwargs).train)
            per_epoch = (n_train // r.data.batch_size) // r.train.grad_accum
            total = r.train.epochs * per_epoch  # type: ignore[operator]
        lrs = lr_curve(r.schedule, total, r.optimizer.lr)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(len(lrs)), lrs)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    w = f", warmup {r.schedule.warmup_steps}" if r.schedule.warmup_steps else ""
    ax.set_title(f"{r.name}: {r.schedule.name}{w}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    console.print(f"{total} steps, lr {min(lrs):.3g} … {max(lrs):.3g}; plot: {out}")
