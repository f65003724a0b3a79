"""``dltricks compare``: Mamba vs Transformers, measured, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from dltricks.cli.common import friendly_errors


def compare(
    families: list[str] | None = typer.Argument(
        None, help="model families (default: mamba transformer); see --list"),
    profile: str = typer.Option("quick", help="smoke | quick | full"),
    device: str = typer.Option("cpu", help="cpu | cuda (timings and the accuracy runs)"),
    out: Path = typer.Option(Path("runs/compare"), help="output folder (results reused)"),
    sections: str | None = typer.Option(
        None, help="comma-separated: complexity,inference,accuracy,edge (default: all)"),
    lab_out: Path | None = typer.Option(
        None, help="lab folder for the accuracy runs (default OUT/lab); a `dltricks lab run` "
                   "folder of the same profile is reused"),
    workers: int = typer.Option(1, help="worker processes for the accuracy runs (one torch "
                                         "thread each)"),
    ray: str | None = typer.Option(None, help="run the accuracy runs as Ray tasks on this "
                                              "cluster address (auto, host:port, local)"),
    experiments: str | None = typer.Option(
        None, help="comma-separated accuracy experiments (default: all mvt_* of the section)"),
    report_only: bool = typer.Option(False, "--report-only",
                                     help="rebuild the report from stored sections"),
    list_families: bool = typer.Option(False, "--list", help="list the model families"),
) -> None:
    """Measure the guide's Mamba-vs-Transformers claims at matched parameter count.

    Examples:

        dltricks compare --profile quick --out runs/compare

        dltricks compare --profile full --workers 2 --out runs/compare-full
    """
    from dltricks.compare.report import rebuild_report
    from dltricks.compare.runner import DEFAULT_FAMILIES, run_compare
    from dltricks.models.families import FAMILIES

    if list_families:
        for f in FAMILIES.values():
            typer.echo(f"{f.name:18s} {f.label}")
        return
    with friendly_errors():
        if report_only:
            summary = rebuild_report(out)
        else:
            summary = run_compare(
                families or list(DEFAULT_FAMILIES), profile, out, device,
                sections=[s.strip() for s in sections.split(",")] if sections else None,
                lab_out=lab_out, workers=workers, ray=ray,
                experiments=[e.strip() for e in experiments.split(",")] if experiments else None)
    for c in summary["claims"]:
        typer.echo(f"{c['verdict']:>20s}  {c['guide']}")
    typer.echo(f"Report: {Path(out) / 'report.html'}")
