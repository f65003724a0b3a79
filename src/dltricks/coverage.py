"""What the project measures, gathered in one place: the lab and the comparison, asked in turn.

The catalog (:mod:`dltricks.lab.catalog`) lists every tip of the guide; a tip is covered by a
lab experiment (``measured``), by a computation that checks it without training (``analysis``:
the lab's analyses in :mod:`dltricks.lab.analyses` and the measurable claims of
``dltricks compare`` in :mod:`dltricks.compare.claims`), or by nothing (``not measured``).

This module sits above both the lab and the comparison (layers: ... lab <- compare <- coverage
<- cli) and asks each of them explicitly what it checks; nothing registers into the catalog on
import, so the lab never needs to import the comparison.
"""

from __future__ import annotations

from typing import Any

from dltricks.compare import claims
from dltricks.lab import analyses, catalog


def checks() -> dict[str, tuple[str, ...]]:
    """Every computation that checks tips without training: ``{name: tip ids}``.

    The lab's analyses under their own names, the comparison's claims as ``compare.<id>``.
    """
    lab = analyses.coverage()
    compare = claims.coverage()
    clash = set(lab) & set(compare)
    if clash:  # a programming error: two checks of one name would hide one of them
        raise RuntimeError(f"Check names used by both the lab and the comparison: {clash}.")
    return {**lab, **compare}


def catalog_status() -> list[dict[str, Any]]:
    """Every tip with its status and what covers it (see :func:`dltricks.lab.catalog.
    catalog_status`), counting the comparison's claims as well as the lab's analyses."""
    return catalog.catalog_status(checks())


def status_counts(rows: list[dict[str, Any]] | None = None) -> dict[str, int]:
    """How many tips are ``measured``, ``analysis`` and ``not measured``."""
    rows = catalog_status() if rows is None else rows
    return {s: sum(r["status"] == s for r in rows) for s in ("measured", "analysis",
                                                              "not measured")}


__all__ = ["catalog_status", "checks", "status_counts"]
