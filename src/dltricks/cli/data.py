"""``dltricks datasets`` and ``dltricks data preview``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from dltricks.cli.common import complete_datasets, console, friendly_errors

data_app = typer.Typer(help="Look at datasets.", no_args_is_help=True)


def datasets() -> None:
    """List the registered datasets.

    Examples:

      dltricks datasets

      dltricks data preview mnist1d iid_noise_scale=0.1
    """
    from dltricks.data import DATASETS

    table = Table(title="datasets")
    for col in ("name", "task", "description"):
        table.add_column(col)
    for name in DATASETS.names():
        meta = DATASETS.meta(name)
        table.add_row(name, meta.get("task", ""), meta.get("description", ""))
    console.print(table)


@data_app.command("preview")
def preview(
    name: str = typer.Argument(..., help="dataset name (see `dltricks datasets`)",
                               autocompletion=complete_datasets),
    options: list[str] = typer.Argument(None, help="dataset kwargs as key=value"),
    out: Path = typer.Option(None, help="PNG path (default: NAME-preview.png)"),
    n: int = typer.Option(16, help="samples in the grid"),
    seed: int = typer.Option(0),
) -> None:
    """Write a PNG grid of samples and print shapes, classes and split sizes.

    Examples:

      dltricks data preview digits --out digits.png

      dltricks data preview mnist1d max_translation=1 iid_noise_scale=0.1

      dltricks data preview arrays path=my_data.npz
    """
    import yaml

    from dltricks.data import DATASETS, create_dataset
    from dltricks.data.preview import preview as make_preview
    from dltricks.train.kwargs import check_kwargs

    with friendly_errors():
        kwargs = {}
        for item in options or []:
            if "=" not in item:
                raise ValueError(f"Dataset option {item!r} is not of the form key=value.")
            k, v = item.split("=", 1)
            kwargs[k.strip()] = yaml.safe_load(v)
        check_kwargs(DATASETS.get(name), kwargs, f"dataset {name!r}", skip=("seed",))
        try:
            splits = create_dataset(name, seed=seed, **kwargs)
        except TypeError as exc:  # a value of a type the builder cannot use
            raise ValueError(f"dataset {name!r}: bad option value ({exc}).") from None
        out = out or Path(f"{name}-preview.png")
        info = make_preview(splits, out, n=n)
    table = Table(title=f"{name}")
    table.add_column("field")
    table.add_column("value")
    for k, v in info.items():
        table.add_row(str(k), str(v))
    console.print(table)
    console.print(f"preview: {out}")
