"""``dltricks recipes`` and ``dltricks schedule plot``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dltricks.cli.common import complete_recipes, console, friendly_errors

schedule_app = typer.Typer(help="Learning-rate schedules.", no_args_is_help=True)


def recipes(
    show: str = typer.Option(None, "--show", help="print the resolved YAML of a built-in "
                             "recipe or a recipe file, exactly as `dltricks train` would use it",
                             autocompletion=complete_recipes),
    overrides: list[str] = typer.Argument(None, help="key=value overrides applied to --show"),
) -> None:
    """List the built-in recipes, or print one resolved recipe as YAML (--show).

    The YAML goes to stdout unwrapped, so it can be saved, edited and trained.

    Examples:

      dltricks recipes

      dltricks recipes --show digits_cnn > my.yaml && dltricks train my.yaml

      dltricks recipes --show my.yaml optimizer.lr=0.01 train.epochs=5
    """
    from dltricks.train.recipe import list_builtin_recipes, resolve_recipe

    with friendly_errors():
        if show:
            text = resolve_recipe(show, overrides or []).to_yaml()
            typer.echo(text, nl=not text.endswith("\n"))
            return
        if overrides:
            raise ValueError("key=value overrides apply to a recipe: use "
                             "`dltricks recipes --show NAME key=value ...`.")
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
    """Draw a recipe's learning-rate curve over its optimizer steps.

    Examples:

      dltricks schedule plot digits_cnn --out lr.png

      dltricks schedule plot my.yaml schedule.warmup_steps=100 --steps 2000
    """
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
