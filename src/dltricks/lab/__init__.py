"""The lab: the guide's tips as a catalog, tested by experiments with statistical verdicts.

* :mod:`~dltricks.lab.catalog`: every claim-bearing bullet of the guide, with its status;
* :mod:`~dltricks.lab.experiment`: :class:`Experiment`, :class:`Arm`, :class:`Claim`, budgets
  per profile and the ``EXPERIMENTS`` registry;
* :mod:`~dltricks.lab.stats`: the verdict rule (paired by seed; exact tests, computed facts);
* :mod:`~dltricks.lab.verdicts`: verdicts of comparisons, experiments and tips;
* :mod:`~dltricks.lab.results`: the typed stored results;
* :mod:`~dltricks.lab.runner`: running, resuming, caching and crash isolation;
* :mod:`~dltricks.lab.report`: results.json, report.md and a self-contained report.html.
"""

# the built-in experiments register themselves in EXPERIMENTS (as dltricks.models does for
# models); the package imports them so that get_experiment and list_experiments see them
from dltricks.lab import experiments as _experiments  # noqa: F401
from dltricks.lab.catalog import TIPS, Tip, catalog_status, get_tip
from dltricks.lab.experiment import (
    EXPERIMENTS,
    PROFILES,
    Arm,
    Budget,
    Claim,
    Experiment,
    get_experiment,
    list_experiments,
    register_experiment,
)
from dltricks.lab.runner import run_experiment, run_lab
from dltricks.lab.stats import compare

__all__ = [
    "EXPERIMENTS",
    "PROFILES",
    "TIPS",
    "Arm",
    "Budget",
    "Claim",
    "Experiment",
    "Tip",
    "catalog_status",
    "compare",
    "get_experiment",
    "get_tip",
    "list_experiments",
    "register_experiment",
    "run_experiment",
    "run_lab",
]
