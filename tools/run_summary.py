"""A Markdown summary of a lab run folder: per experiment, its units, cost and verdict.

Reads every ``OUT/results/<experiment>.json`` that ``dltricks lab run`` wrote (complete or still
partial: a run in progress is summarised as far as it got) and prints a table — experiment,
profile, status, units done / planned, unit-seconds (the sum of the units' training time, one
torch thread each), CPU seconds, verdict — then the totals, the verdict counts and the machine
and execution (workers / Ray) recorded when each experiment ran. The docs' run summaries
(docs/lab.md) are this script's output.

Usage::

    python tools/run_summary.py OUT [--sort cost|name]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any


def _planned(result: dict[str, Any]) -> int:
    config = result.get("config") or {}
    return len(config.get("seeds", [])) * len(config.get("arms", []))


def _cpu_cell(cpu: float | None) -> str:
    return "—" if cpu is None else f"{cpu:.0f}"


def _cpu_total(rows: list[dict]) -> str:
    known = [x["cpu"] for x in rows if x["cpu"] is not None]
    missing = len(rows) - len(known)
    return (f"{sum(known):.0f} CPU seconds"
            + (f" ({missing} experiment(s) without recorded CPU times)." if missing else "."))


def summarise(out: Path, sort: str = "cost") -> str:
    files = sorted((out / "results").glob("*.json"))
    if not files:
        raise ValueError(f"{out} has no results/*.json: not a lab run folder.")
    rows = []
    machines: dict[str, set[str]] = collections.defaultdict(set)
    for f in files:
        r = json.loads(f.read_text())
        units = r.get("units") or {}
        ok = [u for u in units.values() if u.get("status") == "ok"]
        secs = sum(float(u.get("seconds") or 0.0) for u in units.values())
        # None where no unit recorded its CPU time (results written before it was measured)
        cpus = [float(u["cpu_seconds"]) for u in units.values()
                if u.get("cpu_seconds") is not None]
        cpu = sum(cpus) if cpus else None
        verdict = (r.get("analysis") or {}).get("verdict") if r.get("status") != "partial" else None
        rows.append({"id": r["id"], "profile": r.get("profile"), "status": r.get("status"),
                     "done": len(ok), "planned": _planned(r), "seconds": secs, "cpu": cpu,
                     "verdict": verdict or "—"})
        m = r.get("machine") or {}
        ex = r.get("execution") or {}
        machines[f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch "
                 f"{(r.get('versions') or {}).get('torch', '?')}"].add(
            f"workers={ex.get('workers')}, ray={ex.get('ray')}")
    rows.sort(key=(lambda x: -x["seconds"]) if sort == "cost" else (lambda x: x["id"]))
    lines = ["| experiment | profile | status | units | unit-s | CPU s | verdict |",
             "|---|---|---|---|---|---|---|"]
    for x in rows:
        lines.append(f"| `{x['id']}` | {x['profile']} | {x['status']} | {x['done']}/{x['planned']}"
                     f" | {x['seconds']:.0f} | {_cpu_cell(x['cpu'])} | {x['verdict']} |")
    done = sum(x["done"] for x in rows)
    planned = sum(x["planned"] for x in rows)
    complete = sum(x["status"] == "complete" for x in rows)
    verdicts = collections.Counter(x["verdict"] for x in rows if x["verdict"] != "—")
    lines += ["", f"{len(rows)} experiments ({complete} complete), {done}/{planned} units, "
              f"{sum(x['seconds'] for x in rows):.0f} unit-seconds, " + _cpu_total(rows),
              "Verdicts: " + (", ".join(f"{n} {v}" for v, n in verdicts.most_common()) or "none"),
              "Machines: " + "; ".join(f"{m} ({', '.join(sorted(e))})"
                                       for m, e in sorted(machines.items()))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--sort", choices=("cost", "name"), default="cost")
    args = ap.parse_args(argv)
    try:
        print(summarise(args.out, args.sort))
    except (ValueError, OSError, json.JSONDecodeError, KeyError) as err:
        print(f"run_summary: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
