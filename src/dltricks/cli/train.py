"""``dltricks train | resume | eval | lr-find``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from dltricks.cli.common import console, friendly_errors, is_tty


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _report(summary: dict, as_json: bool) -> None:
    if not _is_rank0():  # under torchrun only rank 0 reports
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        _print_summary(summary)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['recipe']}: test metrics (best checkpoint)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary["test"].items():
        table.add_row(k, f"{v:.4f}")
    table.add_row("steps", str(summary["steps"]))
    table.add_row("best val " + summary["monitor"], f"{summary['best_val']:.4f}"
                  if summary["best_val"] is not None else "-")
    console.print(table)
    acc = summary["test"].get("accuracy")
    if acc is not None:
        console.print(f"test accuracy: {acc:.4f}")
    console.print(f"run folder: {summary['run_dir']}")


def train(
    recipe: str = typer.Argument(..., help="built-in recipe name or path to a YAML recipe"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. optimizer.lr=0.01"),
    out: Path = typer.Option(Path("runs"), help="parent folder of the run folder"),
    run_dir: Path = typer.Option(None, help="exact run folder (default: OUT/NAME-TIME)"),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="replace the run RUN_DIR already holds"),
    progress: bool = typer.Option(None, help="progress bar (default: on in a terminal)"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Train a recipe; writes a run folder with recipe, metrics, checkpoints and summary.

    A run folder that already holds a run is refused: continue it with `dltricks resume`, or
    replace it with --overwrite. Example: dltricks train digits_cnn train.epochs=5 --run-dir runs/a
    """
    from dltricks.train.recipe import resolve_recipe
    from dltricks.train.trainer import Trainer

    with friendly_errors():
        r = resolve_recipe(recipe, overrides or [])
        show = is_tty() if progress is None else progress
        summary = Trainer(r, run_dir, out=out, overwrite=overwrite, progress=show).fit()
    _report(summary, json_out)


#: recipe keys ``dltricks resume`` may change: the length of the run and how it is logged and
#: checkpointed; anything else would make the checkpoint describe another model, data or
#: optimisation than the one resumed
RESUMABLE_KEYS = (
    "train.epochs", "train.steps", "train.early_stopping", "train.eval_every_epochs",
    "train.log_every_steps", "train.checkpoint", "train.nonfinite", "device", "description",
)


def resume_overrides_check(overrides: list[str]) -> None:
    """Refuses ``key=value`` overrides that would change what the checkpoint was trained as."""
    from dltricks.train.recipe import RecipeError

    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if not any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS):
            raise RecipeError(
                f"`dltricks resume` cannot change {key!r}: it would no longer match the model, "
                f"data or optimisation the checkpoint was trained with; resumable keys: "
                f"{', '.join(RESUMABLE_KEYS)}. Start a new run to change it."
            )


def resume(
    run_dir: Path = typer.Argument(..., help="run folder to continue"),
    overrides: list[str] = typer.Argument(
        None, help="key=value changes to the run's length or logging, e.g. train.epochs=20"),
    progress: bool = typer.Option(None, help="progress bar (default: on in a terminal)"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Continue a run from its newest valid checkpoint (after Ctrl-C, SIGTERM or a crash).

    A finished run is left as it is (its summary is printed) unless overrides extend it.
    Example: dltricks resume runs/digits_cnn-20261127-001500 train.epochs=20
    """
    from dltricks.train.recipe import RecipeError, load_recipe
    from dltricks.train.trainer import Trainer

    with friendly_errors():
        if not run_dir.is_dir():
            raise RecipeError(f"Run folder {str(run_dir)!r} does not exist.")
        if not (run_dir / "recipe.yaml").is_file():
            raise RecipeError(f"{str(run_dir)!r} is not a run folder (it has no recipe.yaml); "
                              "start it with `dltricks train`.")
        resume_overrides_check(overrides or [])
        r = load_recipe(run_dir / "recipe.yaml", overrides or [])
        show = is_tty() if progress is None else progress
        summary = Trainer(r, run_dir, resume=True, progress=show).fit()
    _report(summary, json_out)


def evaluate(
    run_dir: Path = typer.Argument(..., help="run folder"),
    split: str = typer.Option("test", help="train, val or test"),
    checkpoint: str = typer.Option("best", help="best or last"),
) -> None:
    """Evaluate a run's best (or last) checkpoint on a split (no optimizer is built).

    Example: dltricks eval runs/digits_cnn-20261127-001500 --split val --checkpoint last
    """
    from dltricks.train.evaluate import evaluate_run

    with friendly_errors():
        metrics, used = evaluate_run(run_dir, split, checkpoint)
    console.print(f"{used} on {split}:")
    typer.echo(json.dumps(metrics, indent=1))


def lr_find_cmd(
    recipe: str = typer.Argument(..., help="built-in recipe name or path"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
    min_lr: float = typer.Option(1e-6),
    max_lr: float = typer.Option(1.0),
    steps: int = typer.Option(100),
    plot: Path = typer.Option(Path("lr_find.png"), help="where to write the plot"),
) -> None:
    """LR range test: sweep the learning rate, plot the loss and suggest a value.

    Example: dltricks lr-find digits_cnn --plot lr_find.png
    """
    import tempfile

    from dltricks.train.lr_find import lr_find
    from dltricks.train.recipe import resolve_recipe
    from dltricks.train.trainer import Trainer

    with friendly_errors(), tempfile.TemporaryDirectory() as tmp:
        r = resolve_recipe(recipe, overrides or [])
        res = lr_find(Trainer(r, Path(tmp) / "run", tensorboard=False), min_lr, max_lr, steps)
        res.plot(plot)
    console.print(f"suggested lr (steepest descent): {res.suggestion:.3e}" if res.suggestion
                  else "no suggestion: the loss did not decrease")
    if res.min_loss_lr:
        console.print(f"min-loss lr / 10: {res.min_loss_lr / 10:.3e}")
    console.print(f"plot: {plot}")
