"""``dltricks compare``: Mamba vs Transformers, measured, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from dltricks.cli.common import friendly_errors


def compare(
    families: list[str] | None = typer.Argument(
        None, help="model families (default: mamba transformer); see --list"),
    profile: str = typer.Option("quick", help="smoke | quick | full"),
    device: str = typer.Option("cpu", help="cpu | cuda (timings)"),
    out: Path = typer.Option(Path("runs/compare"), help="output folder (results reused)"),
    sections: str | None = typer.Option(
        None, help="comma-separated: complexity,inference,accuracy,edge (default: all)"),
    lab_out: Path | None = typer.Option(
        None, help="lab folder for the accuracy runs (default OUT/lab); a `dltricks lab run` "
                   "folder of the same profile is reused"),
    report_only: bool = typer.Option(False, "--report-only",
                                     help="rebuild the report from stored sections"),
    list_families: bool = typer.Option(False, "--list", help="list the model families"),
) -> None:
    """Measure the guide's Mamba-vs-Transformers claims at matched parameter count."""
    from dltricks.compare.families import FAMILIES
    from dltricks.compare.report import rebuild_report
    from dltricks.compare.runner import DEFAULT_FAMILIES, run_compare

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
                lab_out=lab_out)
    for c in summary["claims"]:
        typer.echo(f"{c['verdict']:>20s}  {c['guide']}")
    typer.echo(f"Report: {Path(out) / 'report.html'}")
