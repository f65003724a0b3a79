"""Shared CLI plumbing: consoles, turning known errors into clear messages and exit codes."""

from __future__ import annotations

import contextlib
import sys

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

EXIT_USAGE = 2  # bad recipe, unknown name, bad argument
EXIT_FAILURE = 1  # training failed (NaN/Inf, corrupted checkpoint)
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def friendly_errors():
    """Maps the package's expected errors to one readable message and an exit code."""
    from dltricks.train.checkpoint import CheckpointError
    from dltricks.train.recipe import RecipeError
    from dltricks.train.trainer import NonFiniteError, TrainingInterrupted

    try:
        yield
    except (RecipeError, KeyError, ValueError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except (NonFiniteError, CheckpointError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILURE) from None
    except TrainingInterrupted as exc:
        run = exc.checkpoint.parent.parent if exc.checkpoint else "<run folder>"
        err_console.print(f"[yellow]interrupted:[/] {exc}. Continue with `dltricks resume {run}`.",
                          highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def is_tty() -> bool:
    return sys.stderr.isatty()
