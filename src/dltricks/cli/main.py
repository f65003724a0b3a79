"""Entry point of the ``dltricks`` command."""

from __future__ import annotations

import typer

import dltricks
from dltricks.cli import analyze, compare, data, lab, models, recipes, train
from dltricks.cli.common import plain_warnings

app = typer.Typer(
    name="dltricks",
    help="A deep-learning tips & tricks guide made executable.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dltricks {dltricks.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """A deep-learning tips & tricks guide made executable."""
    plain_warnings()


app.command("train")(train.train)
app.command("resume")(train.resume)
app.command("eval")(train.evaluate)
app.command("lr-find")(train.lr_find_cmd)
app.command("recipes")(recipes.recipes)
app.command("datasets")(data.datasets)
app.command("analyze")(analyze.analyze)
app.command("models")(models.models)
app.command("export-hf")(models.export_hf)
app.command("compare")(compare.compare)
app.command("compress")(__import__("dltricks.cli.compress").cli.compress.compress)
app.command("tune")(__import__("dltricks.cli.tune").cli.tune.tune)
app.command("nas")(__import__("dltricks.cli.nas").cli.nas.nas)
app.add_typer(data.data_app, name="data")
app.add_typer(recipes.schedule_app, name="schedule")
app.add_typer(lab.lab_app, name="lab")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
