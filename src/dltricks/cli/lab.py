"""``dltricks lab``: the tip catalog, running experiments, and rebuilding reports."""

from __future__ import annotations

from pathlib import Path

import typer

lab_app = typer.Typer(help="The lab: the guide's tips, measured by experiments.",
                      no_args_is_help=True)


def select_experiments(tips: str | None, section: str | None):
    """Experiments chosen by ``--tips`` (experiment or tip ids) and ``--section``.

    Raises:
        ValueError: an unknown id (the message lists the valid ones) or section, or nothing left.
    """
    from dltricks.lab.catalog import TIPS, sections
    from dltricks.lab.experiment import list_experiments

    exps = list_experiments()
    if tips:
        wanted = [t.strip() for t in tips.split(",") if t.strip()]
        exp_ids = {e.id for e in exps}
        tip_ids = {t.id for t in TIPS}
        bad = [w for w in wanted if w not in exp_ids and w not in tip_ids]
        if bad:
            raise ValueError(
                f"Unknown tip or experiment id(s) {', '.join(bad)}. Experiments: "
                f"{', '.join(sorted(exp_ids))}. Tips: {', '.join(t.id for t in TIPS)}."
            )
        exps = [e for e in exps if e.id in wanted or set(e.tips) & set(wanted)]
    if section:
        names = sections()
        match = [s for s in names if section.lower() in s.lower()]
        if not match:
            raise ValueError(f"Unknown section {section!r}; sections: {'; '.join(names)}.")
        in_section = {t.id for t in TIPS if t.section in match}
        exps = [e for e in exps if set(e.tips) & in_section]
    if not exps:
        raise ValueError("No experiment measures the selected tips yet (see `dltricks lab list`).")
    return exps


@lab_app.command("list")
def list_cmd(
    section: str | None = typer.Option(None, help="only tips of sections matching this"),
    status: str | None = typer.Option(None, help="measured | analysis | not measured"),
) -> None:
    """The catalog: every tip of the guide, its claim, components and status."""
    from rich.console import Console
    from rich.table import Table

    from dltricks.lab.catalog import catalog_status

    rows = catalog_status()
    if section:
        rows = [r for r in rows if section.lower() in r["section"].lower()]
    if status:
        rows = [r for r in rows if r["status"] == status]
    table = Table(show_lines=False)
    for col in ("id", "section", "claim", "components", "status"):
        table.add_column(col, overflow="fold")
    for r in rows:
        st = r["status"] + (f" ({', '.join(r['experiments'])})" if r["experiments"] else "")
        table.add_row(r["id"], r["section"], r["claim"], ", ".join(r["components"]), st)
    console = Console()
    console.print(table)
    counts = {s: sum(r["status"] == s for r in rows)
              for s in ("measured", "analysis", "not measured")}
    console.print(f"{len(rows)} tips: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@lab_app.command("run")
def run_cmd(
    tips: str | None = typer.Option(None, help="comma-separated tip or experiment ids"),
    section: str | None = typer.Option(None, help="only experiments for this guide section"),
    profile: str = typer.Option("quick", help="smoke | quick | full"),
    data: Path | None = typer.Option(None, help="your data: an image folder or a .npz/.csv"),
    out: Path = typer.Option(Path("lab-runs/latest"), help="run folder (reused to resume)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Runs experiments (resuming from OUT) and writes report.html, report.md, results.json."""
    from rich.console import Console

    from dltricks.lab.experiment import PROFILES
    from dltricks.lab.runner import run_lab

    console = Console(stderr=True)
    try:
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
        exps = select_experiments(tips, section)
        summary = run_lab(exps, profile, out, data_path=data, progress=progress,
                          console=console)
    except ValueError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    for row in summary["summary"]:
        console.print(f"{row['experiment']:>16}: {row['verdict']}")
    console.print(f"Report: {Path(out) / 'report.html'}")


@lab_app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="a lab run folder")) -> None:
    """Rebuilds the report of RUN_DIR from its stored results."""
    from rich.console import Console

    from dltricks.lab.report import write_report

    console = Console(stderr=True)
    try:
        summary = write_report(run_dir)
    except ValueError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{len(summary['experiments'])} experiments; report: "
                  f"{Path(run_dir) / 'report.html'}")


if __name__ == "__main__":
    lab_app()
