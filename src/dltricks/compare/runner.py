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
from dltricks.utils.io import atomic_write_text

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
                lab_out: str | Path | None = None, workers: int = 1,
                ray: str | None = None,
                experiments: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs every section of the comparison and writes the report.

    Args:
        families: model families (see :data:`dltricks.models.families.FAMILIES`); the first
            must be ``mamba`` for crossovers and verdicts to refer to it.
        profile: ``smoke`` | ``quick`` | ``full``.
        out: output folder (results reused where valid).
        device: ``cpu`` or ``cuda``: the timings, and the accuracy experiments' training runs
            (on ``cuda`` their results are stored apart from the CPU ones: another config key).
        progress: print a line per measurement.
        console: a rich console.
        sections: run only these of :data:`SECTIONS` (stored ones of the others still go into
            the report).
        lab_out: lab folder of the accuracy experiments (default ``OUT/lab``); pointing it at
            a ``dltricks lab run`` folder of the same profile reuses its finished runs.
        workers: local worker processes for the accuracy experiments' units (one torch thread
            each; 1: in this process).
        ray: run those units as Ray tasks on this cluster address instead.
        experiments: the accuracy experiments to run (default :data:`ACCURACY_EXPERIMENTS`).

    Returns:
        The results.json dict.
    """
    from rich.console import Console

    from dltricks.compare.report import write_report
    from dltricks.models.families import get_family

    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    exp_ids = tuple(dict.fromkeys(experiments)) if experiments else ACCURACY_EXPERIMENTS
    unknown = [e for e in exp_ids if e not in ACCURACY_EXPERIMENTS]
    if unknown:
        raise ValueError(f"Unknown accuracy experiment(s) {unknown}; choose from "
                         f"{', '.join(ACCURACY_EXPERIMENTS)}.")
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
            {"experiments": _experiment_keys(exp_ids, prof.lab_profile, device),
             "families": fams, "lab_profile": prof.lab_profile, "device": device},
            lambda: run_accuracy(exp_ids, fams, prof.lab_profile, lab_dir, log,
                                 workers=workers, ray=ray, device=device)),
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


def _on_device(exp: Any, device: str) -> Any:
    """The experiment with its runs on ``device`` (``cpu``: unchanged)."""
    import dataclasses

    if device == "cpu":
        return exp
    return dataclasses.replace(exp, base={**exp.base, "device": device})


def _experiment_keys(experiment_ids: Sequence[str], lab_profile: str,
                     device: str = "cpu") -> dict[str, str]:
    """Config keys of the accuracy experiments: a changed experiment invalidates the section."""
    from dltricks.lab.experiment import get_experiment

    return {e: config_key(_on_device(get_experiment(e), device).config(lab_profile))
            for e in experiment_ids}


def run_accuracy(experiment_ids: Sequence[str], families: Sequence[str], lab_profile: str,
                 lab_out: Path, log: Callable[[str], None], *, workers: int = 1,
                 ray: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Runs the accuracy experiments (only their arms among ``families``) in a lab folder.

    Each stored experiment carries, beside the lab's analysis, ``curves`` (per arm and seed, the
    unit's metrics), ``learning_curves`` (:func:`learning_curves`: validation score against
    steps and seconds with seed bands) and ``target`` (threshold, step cap, equal compute).
    """
    import dataclasses

    from dltricks.lab.experiment import get_experiment
    from dltricks.lab.runner import DataCache, run_experiment

    cache = DataCache() if workers == 1 and ray is None else None
    results = {}
    for exp_id in experiment_ids:
        exp = _on_device(get_experiment(exp_id), device)
        arms = tuple(a for a in exp.arms if a.name in families)
        names = {a.name for a in arms}
        claims = tuple(c for c in exp.claims if c.treatment in names and c.baseline in names)
        if len(arms) < 2 or not any(c.primary for c in claims):
            log(f"accuracy {exp_id}: skipped (needs two of its families)")
            continue
        if arms != exp.arms:
            premises = tuple(p for p in exp.premises
                             if p.arm in names and (p.than_arm is None or p.than_arm in names))
            exp = dataclasses.replace(exp, arms=arms, claims=claims, premises=premises)
        res = run_experiment(exp, lab_profile, lab_out, cache=cache, workers=workers, ray=ray,
                             on_unit=lambda d: log(f"accuracy {d}"))
        log(f"accuracy {exp_id}: {res['analysis']['verdict']}")
        results[exp_id] = {k: res[k] for k in ("id", "title", "claim", "setup", "notes",
                                               "tips", "analysis", "config", "status")
                           if k in res}
        results[exp_id]["curves"] = _unit_metrics(res)
        results[exp_id]["learning_curves"] = learning_curves(res)
        results[exp_id]["target_summary"] = target_summary(res)
        results[exp_id]["target"] = (res.get("config") or {}).get("target")
        results[exp_id]["step_cap"] = _step_cap(res)
    return results


def _unit_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """Per arm and seed, the metrics (for accuracy-vs-length plots)."""
    out: dict[str, Any] = {}
    for u in result.get("units", {}).values():
        if u.get("status") == "ok":
            out.setdefault(u["arm"], []).append({"seed": u["seed"], **u["metrics"]})
    return out


def _step_cap(result: Mapping[str, Any]) -> int | None:
    recipes = (result.get("config") or {}).get("recipes") or {}
    caps = {int((r.get("train") or {}).get("steps") or 0) for r in recipes.values()}
    return max(caps) if caps else None


def learning_curves(result: Mapping[str, Any], points: int = 60) -> dict[str, Any]:
    """Validation score against training steps and seconds, per arm, with seed bands.

    Read from the stored units (``curves["val"]`` rows ``[step, score, loss]`` and the unit's
    median training-step time ``seconds_per_step``). A run that stopped early (solved and no
    longer improving) keeps its last score to the end of the longest run of its arm, so that
    the mean is not taken over fewer seeds as runs end.

    Args:
        result: a stored lab result (with ``units``).
        points: grid points of the seconds axis.

    Returns:
        ``{arm: {"label", "seeds", "steps", "mean", "lo", "hi", "seconds", "sec_mean",
        "sec_lo", "sec_hi", "per_seed": [{"seed", "seconds_per_step", "steps", "scores"}]}}``:
        ``steps``/``mean``/``lo``/``hi`` are the mean, minimum and maximum over seeds at each
        evaluated step; ``seconds``/``sec_*`` the same on a common grid of training seconds
        (each seed's curve placed at step x its own seconds per step, held constant between
        evaluations).
    """
    labels = {a["name"]: a.get("label", a["name"])
              for a in (result.get("config") or {}).get("arms", [])}
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for u in (result.get("units") or {}).values():
        if u.get("status") != "ok":
            continue
        rows = [(int(r[0]), float(r[1])) for r in (u.get("curves") or {}).get("val", [])
                if len(r) > 1 and r[1] is not None]
        if rows:
            by_arm.setdefault(u["arm"], []).append({
                "seed": u["seed"], "seconds_per_step": u.get("seconds_per_step"),
                "steps": [s for s, _ in rows], "scores": [v for _, v in rows]})
    out: dict[str, Any] = {}
    for arm, seeds in by_arm.items():
        seeds.sort(key=lambda d: d["seed"])
        steps = sorted({s for d in seeds for s in d["steps"]})
        table = [[_held(d["steps"], d["scores"], s) for d in seeds] for s in steps]
        entry: dict[str, Any] = {
            "label": labels.get(arm, arm), "seeds": [d["seed"] for d in seeds],
            "steps": steps, "mean": [_mean(r) for r in table], "lo": [_min(r) for r in table],
            "hi": [_max(r) for r in table], "per_seed": seeds,
            "seconds": [], "sec_mean": [], "sec_lo": [], "sec_hi": []}
        timed = [d for d in seeds if d["seconds_per_step"]]
        if timed:
            end = max(d["steps"][-1] * d["seconds_per_step"] for d in timed)
            grid = [end * (i + 1) / points for i in range(points)]
            for t in grid:
                vals = [_held([s * d["seconds_per_step"] for s in d["steps"]], d["scores"], t)
                        for d in timed]
                if all(v is None for v in vals):
                    continue
                entry["seconds"].append(t)
                entry["sec_mean"].append(_mean(vals))
                entry["sec_lo"].append(_min(vals))
                entry["sec_hi"].append(_max(vals))
        out[arm] = entry
    return out


#: per-arm quantities of :func:`target_summary`
TARGET_METRICS: tuple[str, ...] = ("steps_to_target", "seconds_to_target", "best_val",
                                   "val_at_equal_compute")


def target_summary(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per arm of a target-trained experiment: seeds solved, and mean and standard
    deviation over seeds of the target metrics (failures at the cap included).

    Returns:
        ``[{"arm", "label", "n", "solved", "learned", "<metric>": {"mean", "sd", "values"},
        ...}]``; ``learned`` is the premise's reading (most seeds solved).
    """
    arms = ((result.get("analysis") or {}).get("arms") or {})
    rows = []
    for name, arm in arms.items():
        metrics = arm.get("metrics") or {}
        solved = [v for v in (metrics.get("solved") or {}).get("values") or []
                  if v is not None]
        if not solved:
            continue
        row: dict[str, Any] = {"arm": name, "label": arm.get("label", name), "n": len(solved),
                               "solved": int(sum(solved)),
                               "learned": sum(solved) / len(solved) > 0.5}
        for m in TARGET_METRICS:
            vals = [v for v in (metrics.get(m) or {}).get("values") or [] if v is not None]
            mean = _mean(vals)
            sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 \
                if mean is not None and len(vals) > 1 else None
            row[m] = {"mean": mean, "sd": sd, "values": vals}
        rows.append(row)
    return rows


def _held(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """The last y at or before x (None before the first point; the last one after the end)."""
    last = None
    for xi, yi in zip(xs, ys, strict=True):
        if xi > x:
            break
        last = yi
    return last


def _mean(v: Sequence[float | None]) -> float | None:
    f = [x for x in v if x is not None]
    return sum(f) / len(f) if f else None


def _min(v: Sequence[float | None]) -> float | None:
    f = [x for x in v if x is not None]
    return min(f) if f else None


def _max(v: Sequence[float | None]) -> float | None:
    f = [x for x in v if x is not None]
    return max(f) if f else None


__all__ = [
    "ACCURACY_EXPERIMENTS",
    "DEFAULT_FAMILIES",
    "PROFILES",
    "SECTIONS",
    "TARGET_METRICS",
    "CompareProfile",
    "learning_curves",
    "run_accuracy",
    "run_compare",
    "run_section",
    "target_summary",
]
