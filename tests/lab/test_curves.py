"""Curves to a target: steps/seconds to threshold, failures at the cap, equal compute."""

import pytest

from dltricks.lab.curves import StepClock, Target, target_metrics

CURVE = [[10, 0.2, 2.0], [20, 0.6, 1.0], [30, None, None], [40, 0.96, 0.1], [50, 0.94, 0.2]]


def test_first_step_at_or_above_the_threshold():
    m = target_metrics(CURVE, step_cap=50, threshold=0.95, seconds_per_step=0.5)
    assert m == {"solved": 1.0, "steps_to_target": 40.0, "seconds_to_target": 20.0,
                 "best_val": 0.96}


def test_a_run_that_never_solves_counts_as_the_cap():
    m = target_metrics(CURVE, step_cap=50, threshold=0.99, seconds_per_step=0.5)
    assert m["solved"] == 0.0 and m["steps_to_target"] == 50.0
    assert m["seconds_to_target"] == 25.0  # the worst value, never dropped


def test_equal_compute_reads_the_last_score_within_the_budget():
    # 0.5 s per step: 22 s of training reach step 44 -> the last evaluation within is step 40
    m = target_metrics(CURVE, 50, 0.95, 0.5, equal_compute_s=22.0)
    assert m["val_at_equal_compute"] == 0.96
    slow = target_metrics(CURVE, 50, 0.95, 2.0, equal_compute_s=22.0)  # reaches step 11
    assert slow["val_at_equal_compute"] == 0.2


def test_target_per_profile_and_bad_threshold():
    t = Target({"smoke": 0.1, "quick": 0.9, "full": 0.95}, equal_compute_s=30.0)
    assert t.threshold_for("quick") == 0.9 and t.equal_compute_for("full") == 30.0
    with pytest.raises(ValueError, match="threshold"):
        Target(1.5)


def test_step_clock_median_ignores_an_evaluation_spike():
    clock = StepClock()
    clock.intervals = [0.1, 0.1, 5.0, 0.1]
    assert clock.seconds_per_step == pytest.approx(0.1)


def test_report_curve_mean_holds_a_stopped_seeds_last_value():
    from dltricks.lab.report import _mean_curve

    # seed 1 stopped at step 20 (solved); at step 30 the mean still counts it at 0.9
    steps, mean = _mean_curve([[[10, 0.5], [20, 0.9]], [[10, 0.3], [20, 0.5], [30, 0.7]]])
    assert list(steps) == [10, 20, 30]
    assert mean == pytest.approx([0.4, 0.7, 0.8])
