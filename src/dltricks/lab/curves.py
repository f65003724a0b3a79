"""Learning curves to a target: steps and seconds to solve a task, best score, equal compute.

A snapshot after a fixed number of steps measures the budget, not the model: a model that
solves a task at step 1,400 and one that never does look alike at step 200. An experiment with
a :class:`Target` trains each run up to a step cap, evaluates on the validation split along the
way, and the runner turns the validation curve into per-seed metrics:

* ``solved``: 1 if the validation score reached the threshold, else 0 (a binary outcome: the
  lab compares it with an exact test);
* ``steps_to_target``: the first evaluated step at or above the threshold; a run that never
  got there counts as the step cap (the worst value, so failures are never dropped);
* ``seconds_to_target``: ``steps_to_target`` times the run's median training-step time
  (evaluation excluded, one torch thread), the same worst-value rule;
* ``best_val``: the best validation score of the run;
* ``val_at_equal_compute``: the last validation score reached within ``equal_compute_s``
  seconds of training (so a slower architecture is charged for its speed).

The validation score is the run's curve score: accuracy, token accuracy or Dice.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dltricks.train.trainer import Callback


@dataclass(frozen=True)
class Target:
    """When a run counts as having solved its task.

    Args:
        threshold: validation score that counts as solved, per profile (a float for all).
        equal_compute_s: training seconds at which ``val_at_equal_compute`` is read, per
            profile (None: not reported).
        metric: the validation score's name, for the report.
        patience: stop a run once it has reached the threshold and its validation score has
            not improved for this many evaluations (:class:`StopWhenSolved`); a run that has
            not reached it always trains to the step cap. None: every run trains to the cap.
    """

    threshold: float | Mapping[str, float]
    equal_compute_s: float | Mapping[str, float] | None = None
    metric: str = "token_accuracy"
    patience: int | None = None

    def __post_init__(self) -> None:
        for v in self._values(self.threshold):
            if not 0.0 < v <= 1.0:
                raise ValueError(f"A target threshold must be in (0, 1], got {v}.")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"A target's patience must be at least 1, got {self.patience}.")

    @staticmethod
    def _values(v: float | Mapping[str, float] | None) -> list[float]:
        if v is None:
            return []
        return list(v.values()) if isinstance(v, Mapping) else [float(v)]

    def threshold_for(self, profile: str) -> float:
        t = self.threshold
        return float(t[profile] if isinstance(t, Mapping) else t)

    def equal_compute_for(self, profile: str) -> float | None:
        e = self.equal_compute_s
        if e is None:
            return None
        return float(e[profile]) if isinstance(e, Mapping) else float(e)

    def to_dict(self, profile: str) -> dict[str, float | str | None]:
        out: dict[str, float | str | None] = {
            "threshold": self.threshold_for(profile),
            "equal_compute_s": self.equal_compute_for(profile), "metric": self.metric}
        if self.patience is not None:
            out["patience"] = self.patience
        return out


class StepClock(Callback):
    """Wall-clock time of every optimizer step, measured between consecutive step ends.

    An interval that contains an evaluation is longer than the others; the median step time
    is therefore the training speed without evaluation.
    """

    def __init__(self) -> None:
        self.last: float | None = None
        self.intervals: list[float] = []

    def on_step_end(self, trainer) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.intervals.append(now - self.last)
        self.last = now

    @property
    def seconds_per_step(self) -> float | None:
        return statistics.median(self.intervals) if self.intervals else None


class StopWhenSolved(Callback):
    """Ends a run ``patience`` evaluations after its validation score last improved, once the
    score has reached ``threshold``; a run below the threshold trains on to its step cap (so
    "not solved" always means "not solved within the cap").

    The score is the validation ``accuracy``, ``token_accuracy`` or ``dice``, the same the
    runner's curve reads. The trainer's loop stops at the end of the evaluation (its step
    budget is lowered to the current step).
    """

    def __init__(self, threshold: float, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}.")
        self.threshold, self.patience = float(threshold), int(patience)
        self.solved = False
        self.best: float | None = None
        self.bad = 0
        self.stopped_at: int | None = None

    def on_epoch_end(self, trainer, metrics: Mapping[str, float]) -> None:
        score = next((metrics[k] for k in ("accuracy", "token_accuracy", "dice")
                      if metrics.get(k) is not None), None)
        if score is None:
            return
        score = float(score)
        if self.best is None or score > self.best:
            self.best, self.bad = score, 0
        else:
            self.bad += 1
        self.solved = self.solved or score >= self.threshold
        if self.solved and self.bad >= self.patience:
            self.stopped_at = trainer.step
            trainer.total_steps = trainer.step


def target_metrics(val: Sequence[Sequence[float | None]], step_cap: int, threshold: float,
                   seconds_per_step: float | None, equal_compute_s: float | None = None
                   ) -> dict[str, float | None]:
    """Per-run metrics of a validation curve against a target.

    Args:
        val: ``[step, score, ...]`` rows in step order (score may be None).
        step_cap: the run's step budget (the value of a run that never reached the target).
        threshold: the score that counts as solved.
        seconds_per_step: the run's median training-step time, or None.
        equal_compute_s: training seconds at which to read the score, or None.

    Returns:
        ``solved``, ``steps_to_target``, ``seconds_to_target``, ``best_val`` and, with
        ``equal_compute_s``, ``val_at_equal_compute``.
    """
    scored = [(int(r[0]), float(r[1])) for r in val if r[1] is not None]
    hit = next((s for s, v in scored if v >= threshold), None)
    steps = float(hit if hit is not None else step_cap)
    out: dict[str, float | None] = {
        "solved": 1.0 if hit is not None else 0.0,
        "steps_to_target": steps,
        "seconds_to_target": steps * seconds_per_step if seconds_per_step else None,
        "best_val": max((v for _, v in scored), default=None),
    }
    if equal_compute_s is not None:
        if seconds_per_step:
            within = [v for s, v in scored if s * seconds_per_step <= equal_compute_s]
            out["val_at_equal_compute"] = within[-1] if within else None
        else:
            out["val_at_equal_compute"] = None
    return out


__all__ = ["StepClock", "StopWhenSolved", "Target", "target_metrics"]
