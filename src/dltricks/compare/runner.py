"""``dltricks compare``: runs the sections, stores each as it finishes, writes the report.

Layout of a compare folder::

    OUT/
        sections/<name>.json   one per section: config, key, result, seconds
        lab/                   the accuracy experiments' lab folder (results per unit)
        report.html, report.md, results.json, figures/

A stored section is reused when its key (hash of its config and the package version) still
matches, so an interrupted run resumes and a rerun of the same profile costs nothing; the
accuracy experiments resume unit by unit through the lab runner.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dltricks.lab.experiment import config_key
from dltricks.train.checkpoint import atomic_write_text

#: Families compared by default.
DEFAULT_FAMILIES: tuple[str, ...] = ("mamba", "transformer", "transformer_abs", "hybrid",
                                     "early_exit")

#: Accuracy experiments (lab ids) of the comparison; each runs its arms among the families.
ACCURACY_EXPERIMENTS: tuple[str, ...] = ("mvt_selective_copying", "mvt_induction_heads",
                                         "mvt_mqar", "mvt_mnist1d", "mvt_early_exit")


@dataclass(frozen=True)
class CompareProfile:
    """Budgets of one profile.

    Args:
        start_len, max_len: lengths of the complexity section (doubling).
        point_budget_s: a family stops growing in length when its next point would take longer.
        repeats: timed calls per complexity point.
        contexts: context lengths of the generation section.
        new_tokens: timed generation steps per context.
        lab_profile: profile of the accuracy experiments (``smoke``/``quick``/``full``).
    """

    start_len: int
    max_len: int
    point_budget_s: float
    repeats: int
    contexts: tuple[int, ...]
    new_tokens: int
    lab_profile: str
    extra: Mapping[str, Any] = field(default_factory=dict)


PROFILES: dict[str, CompareProfile] = {
    "smoke": CompareProfile(64, 256, 5.0, 1, (32, 64), 4, "smoke"),
    "quick": CompareProfile(256, 16384, 20.0, 2, (128, 512, 2048, 8192, 32768), 32, "quick"),
    "full": CompareProfile(256, 65536, 90.0, 3, (128, 512, 2048, 8192, 32768, 65536), 64,
                           "full"),
}


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_section(out: Path, name: str, config: Mapping[str, Any],
                fn: Callable[[], dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
    """Runs ``fn`` unless ``OUT/sections/<name>.json`` holds a result for the same config."""
    path = out / "sections" / f"{name}.json"
    key = config_key({"section": name, **config})
    old = _load(path)
    if old is not None and old.get("key") == key and old.get("status") == "ok":
        log(f"{name}: reusing {path}")
        return old
    t0 = time.perf_counter()
    try:
        result = {"status": "ok", "result": fn()}
    except Exception as err:  # record, go on with the other sections
        result = {"status": "error", "error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc()}
        log(f"{name}: ERROR {type(err).__name__}: {err}")
    record = {"section": name, "key": key, "config": dict(config),
              "seconds": time.perf_counter() - t0, **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, default=str))
    return record


SECTIONS: tuple[str, ...] = ("complexity", "inference", "accuracy", "edge")


def run_compare(families: Sequence[str] = DEFAULT_FAMILIES, profile: str = "quick",
                out: str | Path = "runs/compare", device: str = "cpu",
                progress: bool = True, console: Any = None,
                sections: Sequence[str] | None = None,
                lab_out: str | Path | None = None) -> dict[str, Any]:
    """Runs every section of the comparison and writes the report.

    Args:
        families: model families (see :data:`dltricks.compare.families.FAMILIES`); the first
            must be ``mamba`` for crossovers and verdicts to refer to it.
        profile: ``smoke`` | ``quick`` | ``full``.
        out: output folder (results reused where valid).
        device: ``cpu`` or ``cuda`` (timings; accuracy runs train on the CPU).
        progress: print a line per measurement.
        console: a rich console.
        sections: run only these of :data:`SECTIONS` (stored ones of the others still go into
            the report).
        lab_out: lab folder of the accuracy experiments (default ``OUT/lab``); pointing it at
            a ``dltricks lab run`` folder of the same profile reuses its finished runs.

    Returns:
        The results.json dict.
    """
    from rich.console import Console

    from dltricks.compare.families import get_family
    from dltricks.compare.report import write_report

    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available here.")
    fams = list(dict.fromkeys(families))
    for f in fams:
        get_family(f)
    if "mamba" not in fams or not any(f != "mamba" for f in fams):
        raise ValueError(f"Compare needs 'mamba' and at least one other family, got {fams}.")
    wanted = list(sections) if sections else list(SECTIONS)
    bad = [s for s in wanted if s not in SECTIONS]
    if bad:
        raise ValueError(f"Unknown section(s) {bad}; sections: {', '.join(SECTIONS)}.")
    prof = PROFILES[profile]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lab_dir = Path(lab_out) if lab_out is not None else out / "lab"
    console = console or Console(stderr=True)

    def log(msg: str) -> None:
        if progress:
            console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")

    t0 = time.perf_counter()
    done: dict[str, Any] = {}
    timing_fams = [f for f in fams if get_family(f).lm is not None and get_family(f).timing]
    threads = torch.get_num_threads()
    from dltricks.compare.complexity import run_complexity
    from dltricks.compare.edge import run_edge
    from dltricks.compare.inference import run_inference

    plan: dict[str, tuple[dict[str, Any], Callable[[], dict[str, Any]]]] = {
        "complexity": (
            {"families": timing_fams, "start": prof.start_len, "max_len": prof.max_len,
             "point_budget_s": prof.point_budget_s, "repeats": prof.repeats, "device": device,
             "threads": threads},
            lambda: run_complexity(timing_fams, start=prof.start_len, max_len=prof.max_len,
                                   point_budget_s=prof.point_budget_s, repeats=prof.repeats,
                                   device=device, progress=log)),
        "inference": (
            {"families": timing_fams, "contexts": list(prof.contexts),
             "new_tokens": prof.new_tokens, "device": device, "threads": threads},
            lambda: run_inference(timing_fams, prof.contexts, new_tokens=prof.new_tokens,
                                  device=device, progress=log)),
        "accuracy": (
            {"experiments": _experiment_keys(ACCURACY_EXPERIMENTS, prof.lab_profile),
             "families": fams, "lab_profile": prof.lab_profile},
            lambda: run_accuracy(ACCURACY_EXPERIMENTS, fams, prof.lab_profile, lab_dir, log)),
        "edge": (
            {"families": timing_fams, "profile": profile, "threads": threads},
            lambda: run_edge(timing_fams, profile=profile, progress=log)),
    }
    for name in wanted:
        config, fn = plan[name]
        done[name] = run_section(out, name, config, fn, log)
    for name in SECTIONS:  # earlier results of sections not run now still belong in the report
        stored = _load(out / "sections" / f"{name}.json")
        if name not in done and stored is not None:
            done[name] = stored
    summary = write_report(out, {k: done[k] for k in SECTIONS if k in done}, profile=profile,
                           device=device, wall_seconds=time.perf_counter() - t0,
                           lab_out=lab_dir)
    log(f"report: {out / 'report.html'}")
    return summary


def _experiment_keys(experiment_ids: Sequence[str], lab_profile: str) -> dict[str, str]:
    """Config keys of the accuracy experiments: a changed experiment invalidates the section."""
    from dltricks.lab.experiment import get_experiment

    return {e: config_key(get_experiment(e).config(lab_profile)) for e in experiment_ids}


def run_accuracy(experiment_ids: Sequence[str], families: Sequence[str], lab_profile: str,
                 lab_out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Runs the accuracy experiments (only their arms among ``families``) in a lab folder."""
    import dataclasses

    from dltricks.lab.experiment import get_experiment
    from dltricks.lab.runner import DataCache, run_experiment

    cache = DataCache()
    results = {}
    for exp_id in experiment_ids:
        exp = get_experiment(exp_id)
        arms = tuple(a for a in exp.arms if a.name in families)
        claims = tuple(c for c in exp.claims
                       if c.treatment in families and c.baseline in families)
        if len(arms) < 2 or not any(c.primary for c in claims):
            log(f"accuracy {exp_id}: skipped (needs two of its families)")
            continue
        if arms != exp.arms:
            exp = dataclasses.replace(exp, arms=arms, claims=claims)
        res = run_experiment(exp, lab_profile, lab_out, cache=cache,
                             on_unit=lambda d: log(f"accuracy {d}"))
        log(f"accuracy {exp_id}: {res['analysis']['verdict']}")
        results[exp_id] = {k: res[k] for k in ("id", "title", "claim", "setup", "notes",
                                               "tips", "analysis", "config", "status")}
        results[exp_id]["curves"] = _unit_metrics(res)
    return results


def _unit_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """Per arm and seed, the metrics (for accuracy-vs-length plots)."""
    out: dict[str, Any] = {}
    for u in result.get("units", {}).values():
        if u.get("status") == "ok":
            out.setdefault(u["arm"], []).append({"seed": u["seed"], **u["metrics"]})
    return out


__all__ = ["ACCURACY_EXPERIMENTS", "DEFAULT_FAMILIES", "PROFILES", "SECTIONS", "CompareProfile",
           "run_accuracy", "run_compare", "run_section"]
