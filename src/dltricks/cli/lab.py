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
    """The catalog: every tip of the guide, its claim, components and status.

    Examples:

        dltricks lab list --status "not measured"

        dltricks lab list --section "Mamba"
    """
    from rich.console import Console
    from rich.table import Table

    from dltricks.coverage import catalog_status

    statuses = ("measured", "analysis", "not measured")
    if status is not None and status not in statuses:
        raise typer.BadParameter(f"{status!r} is not a status; use one of: "
                                 f"{', '.join(map(repr, statuses))}.", param_hint="--status")
    rows = catalog_status()
    if section:
        rows = [r for r in rows if section.lower() in r["section"].lower()]
    if status:
        rows = [r for r in rows if r["status"] == status]
    console = Console()
    wide = console.width >= 120  # narrower: id, status and claim only, ids unbroken
    table = Table(show_lines=False)
    for col in ("id", "section", "claim", "components", "status") if wide else ("id", "status",
                                                                               "claim"):
        table.add_column(col, overflow="fold", no_wrap=col == "id" or (col == "status"
                                                                        and not wide))
    for r in rows:
        st = r["status"] + (f" ({', '.join(r['experiments'])})" if r["experiments"] else "")
        table.add_row(*((r["id"], r["section"], r["claim"], ", ".join(r["components"]), st)
                        if wide else (r["id"], r["status"], r["claim"])))
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
    workers: int | None = typer.Option(
        None, help="parallel worker processes, one torch thread each [default: the cores]"),
    ray: str | None = typer.Option(
        None, help="run units as Ray tasks on this cluster: auto, HOST:PORT, or local"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="with --data: the largest batch any experiment uses "
                                   "[default: a quarter of the training split]"),
    progress: bool = typer.Option(True, help="show progress"),
) -> None:
    """Runs experiments (resuming from OUT) and writes report.html, report.md, results.json.

    Verdicts go to stdout, progress and failures to stderr. Exits 1 when every experiment
    failed.

    Examples:

        dltricks lab run --tips batchnorm --out runs/lab

        dltricks lab run --profile full --workers 2 --out runs/lab-full

        dltricks lab run --profile full --ray auto --out runs/lab-full   # on a Ray cluster

        dltricks lab run --data my_arrays.npz --batch-size 16 --out runs/mine
    """
    from rich.console import Console

    from dltricks.lab.execute import default_workers
    from dltricks.lab.experiment import PROFILES
    from dltricks.lab.runner import run_lab

    console = Console(stderr=True)
    try:
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}.")
        exps = select_experiments(tips, section)
        summary = run_lab(exps, profile, out, data_path=data, progress=progress,
                          console=console, workers=workers or default_workers(), ray=ray,
                          batch_size=batch_size)
    except ValueError as err:
        console.print(f"[red]{err}[/red]", highlight=False)
        raise typer.Exit(2) from None
    rows = summary["summary"]
    for row in rows:
        typer.echo(f"{row['experiment']:>24}: {row['verdict']}")
    console.print(f"Report: {Path(out) / 'report.html'}")
    if rows and all(r["verdict"] == "error" for r in rows):
        console.print("[red]Every experiment failed; the reasons are above and in the "
                      "report.[/red]")
        raise typer.Exit(1)


@lab_app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="a lab run folder")) -> None:
    """Rebuilds the report of RUN_DIR from its stored results.

    Examples:

        dltricks lab report runs/lab
    """
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
