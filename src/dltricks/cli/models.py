"""``dltricks models [PATTERN]``: the registered models with their task and parameter count;
``dltricks export-hf RUN OUT``: a trained ``mamba_lm`` as a Hugging Face folder."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dltricks.cli.common import console, friendly_errors


def model_rows(pattern: str | None = None) -> list[dict[str, Any]]:
    """One dict per registered model matching ``pattern`` (shell wildcards; a plain word
    matches anywhere in the name): ``name``, ``task``, ``params``, ``description``, ``needs``.

    ``params`` is counted at the model's default size, built on the meta device (no memory),
    with the required arguments it has no default for (``in_channels``, ``num_classes``,
    ``vocab_size``, ...) taken from its registry example and listed in ``needs``; None when the
    model cannot be built that way.

    Raises:
        ValueError: no model matches ``pattern``.
    """
    import torch

    from dltricks.cli.analyze import _registry
    from dltricks.models.registry import create_model

    registry = _registry()
    if pattern and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    names = registry.names(pattern)
    if not names:
        raise ValueError(f"No model matches {pattern!r}; `dltricks models` lists them all.")
    rows = []
    for name in names:
        meta = registry.meta(name)
        example = meta.get("example", {}).get("kwargs", {})
        params = inspect.signature(registry.get(name)).parameters
        # required arguments, and input sizes whose default None means "give one of them"
        needs = {k: example[k] for k, p in params.items() if k in example and (
            p.default is inspect.Parameter.empty
            or (p.default is None and k in ("in_channels", "vocab_size", "in_features")))}
        count = None
        try:
            with torch.device("meta"):
                net = create_model(name, **needs)
            count = sum(p.numel() for p in net.parameters())
        except Exception:  # a model that cannot be built without data: no count
            count = None
        rows.append({"name": name, "task": meta.get("task", ""), "params": count,
                     "description": meta.get("description", ""), "needs": needs})
    return rows


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def models(
    pattern: str = typer.Argument(None, help="filter: shell wildcards (resnet*) or a word "
                                  "matched anywhere in the name"),
    json_out: bool = typer.Option(False, "--json", help="print machine-readable rows"),
) -> None:
    """List the registered models: name, task, parameters at the default size, description.

    Parameters are counted with the required arguments taken from each model's registry
    example (e.g. in_channels=1, num_classes=10); a recipe sizes them from its data instead.

    Examples:

      dltricks models

      dltricks models 'resnet*'

      dltricks models mamba --json
    """
    with friendly_errors():
        rows = model_rows(pattern)
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(title="models (dltricks analyze NAME; model.name=NAME in a recipe)")
    table.add_column("name", no_wrap=True)
    table.add_column("task")
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("description")
    for r in rows:
        table.add_row(r["name"], r["task"], _fmt_params(r["params"]), r["description"])
    console.print(table)
    console.print("params: default size; required arguments from the registry example "
                  "(see --json 'needs').", highlight=False)


def export_hf(
    run_dir: Path = typer.Argument(..., help="run folder of a trained mamba_lm"),
    out: Path = typer.Argument(..., help="folder to write config.json + model.safetensors"),
    checkpoint: str = typer.Option("best", help="best or last"),
) -> None:
    """Export a trained mamba_lm run as a Hugging Face MambaForCausalLM folder.

    transformers' MambaForCausalLM.from_pretrained(OUT) then computes the same logits; the
    Python API is dltricks.models.hf_mamba.export_hf_mamba(model, folder).

    Examples:

      dltricks export-hf runs/selective_copying-20261130-101500 hf_model

      dltricks export-hf runs/my-lm hf_model --checkpoint last
    """
    from dltricks.models.hf_mamba import export_hf_mamba
    from dltricks.train.recipe import load_recipe
    from dltricks.train.trainer import Trainer, checkpoint_weights_file

    with friendly_errors():
        recipe_file = run_dir / "recipe.yaml"
        if not recipe_file.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no recipe.yaml).")
        r = load_recipe(recipe_file)
        if r.model.name != "mamba_lm":
            raise ValueError(f"Run {run_dir} trained {r.model.name!r}; only mamba_lm runs export "
                             "to MambaForCausalLM.")
        found, file = checkpoint_weights_file(run_dir, checkpoint)
        trainer = Trainer(r, run_dir, readonly=True)
        found.load_model(trainer.model, file)
        folder = export_hf_mamba(trainer.model.to("cpu"), out)
    console.print(f"wrote {folder / 'config.json'} and {folder / 'model.safetensors'} "
                  f"({found.path.name}, {file})", highlight=False)
