"""Shared CLI plumbing: consoles, turning known errors into clear messages and exit codes."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    import torch

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
        err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (NonFiniteError, CheckpointError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE) from None
    except TrainingInterrupted as exc:
        run = exc.checkpoint.parent.parent if exc.checkpoint else "<run folder>"
        err_console.print(f"[yellow]interrupted:[/] {escape(str(exc))}. Continue with "
                          f"`dltricks resume {run}`.", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    name = "" if category is UserWarning else f" ({category.__name__})"
    return f"warning{name}: {message}\n"


def plain_warnings() -> None:
    """Shows Python warnings as ``warning: <message>`` lines, without the source location and
    code line that mean nothing to a command-line user."""
    import warnings

    warnings.formatwarning = _one_line_warning


def complete_models(incomplete: str) -> list[str]:
    """Shell completion: registered model names starting with ``incomplete``."""
    from dltricks.models import list_models

    return [n for n in list_models() if n.startswith(incomplete)]


def complete_recipes(incomplete: str) -> list[str]:
    """Shell completion: built-in recipe names starting with ``incomplete``."""
    from dltricks.train.recipe import list_builtin_recipes

    return [n for n in list_builtin_recipes() if n.startswith(incomplete)]


def complete_datasets(incomplete: str) -> list[str]:
    """Shell completion: registered dataset names starting with ``incomplete``."""
    from dltricks.data import list_datasets

    return [n for n in list_datasets() if n.startswith(incomplete)]


def is_tty() -> bool:
    return sys.stderr.isatty()


def parse_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` (CUDA when present) as a
    device that exists on this machine.

    Raises:
        ValueError: an unknown device name, or a device this machine does not have.
    """
    import torch

    text = (name or "").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise ValueError(f"Unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto.") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"--device {name}: no CUDA device is available on this machine; "
                             "use --device cpu.")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {name}: this machine has {n} CUDA device(s) "
                             f"(cuda:0 to cuda:{n - 1}).")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"--device {name}: MPS is not available on this machine.")
    elif dev.type != "cpu":
        raise ValueError(f"Unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto.")
    return dev
