"""``dltricks nas``: architecture search over the package's conv blocks on a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from dltricks.cli.common import console, friendly_errors


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--{name} takes comma-separated integers, got {text!r}.") from None
    if not values:
        raise ValueError(f"--{name} needs at least one value.")
    return values


def nas(
    data: str = typer.Option("digits", help="registered classification dataset (2-D or 1-D)"),
    strategy: str = typer.Option("evolution", help="random, evolution (regularized, Real et al. "
                                 "2019), reinforce (Zoph & Le 2017) or nsga2 (accuracy vs MACs)"),
    budget: int = typer.Option(20, help="candidate evaluations (proxy trainings)"),
    steps: int = typer.Option(100, help="training steps of each candidate"),
    stages: int = typer.Option(2, help="stages of the network"),
    kernels: str = typer.Option("3,5", help="kernel sizes to search"),
    dilations: str = typer.Option("1,2", help="dilations to search"),
    widths: str = typer.Option("8,16,32", help="widths to search"),
    depths: str = typer.Option("1,2", help="blocks per stage to search"),
    population: int = typer.Option(8, help="evolution / NSGA-II population"),
    seed: int = typer.Option(0, help="seed of the data split, the search and the training"),
    out: Path = typer.Option(Path("runs/nas"), help="output folder"),
) -> None:
    """Search CNN architectures (kernel, dilation, width, depth, separable, SE, skips); writes
    every candidate's accuracy, params, MACs and receptive field, and the Pareto plot.

    Example: dltricks nas --strategy evolution --budget 16
    """
    from dltricks.data import create_dataset
    from dltricks.search.nas import STRATEGIES, Evaluator, NASSpace, run_search, write_result

    with friendly_errors():
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown NAS strategy {strategy!r}; use one of "
                             f"{', '.join(STRATEGIES)}.")
        space = NASSpace(n_stages=stages, kernel_sizes=_ints(kernels, "kernels"),
                         dilations=_ints(dilations, "dilations"),
                         widths=_ints(widths, "widths"), depths=_ints(depths, "depths"))
        if budget < 1 or steps < 1:
            raise ValueError(f"--budget and --steps must be >= 1, got {budget} and {steps}.")
        ds = create_dataset(data, seed=seed)
        if ds.task != "classification" or ds.spatial_dims not in (1, 2, 3):
            raise ValueError(f"nas searches CNN classifiers; {data!r} is a {ds.task} dataset "
                             f"with {ds.spatial_dims} spatial axes.")
        evaluator = Evaluator(space, ds, steps=steps, seed=seed)
        extra = {"population": population} if strategy in ("evolution", "nsga2") else {}
        result = run_search(strategy, space, evaluator, budget, seed=seed, **extra)
        summary = write_result(result, space, out)
    best = summary["best"]
    console.print(f"{strategy}: {summary['evaluations']} evaluations ({summary['distinct']} "
                  f"distinct) of a space of {summary['space_size']:,}")
    console.print(f"best: {best['name']}  val acc {best['val_accuracy']:.4f}, test acc "
                  f"{best['test_accuracy']:.4f}, {best['params']:,.0f} params, "
                  f"{best['macs']:,.0f} MACs, receptive field {best['receptive_field']:.0f}",
                  highlight=False)
    console.print("Pareto front (val accuracy vs MACs):")
    for r in summary["pareto_front"]:
        console.print(f"  {r['val_accuracy']:.4f}  {r['macs']:>12,.0f} MACs  {r['name']}",
                      highlight=False)
    console.print(f"candidates: {out / 'candidates.csv'}; plot: {out / 'pareto.png'}")
