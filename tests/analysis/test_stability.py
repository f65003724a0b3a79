"""Loss-spike statistics of a training curve, on hand-made curves."""

import math

import pytest

from dltricks.analysis.stability import spike_stats


def test_spike_stats_on_a_smooth_curve_counts_nothing():
    out = spike_stats([2.0 - 0.01 * t for t in range(50)])
    assert out == {"loss_spikes": 0.0, "max_loss_rise": 0.0}


def test_spike_stats_counts_one_spike_and_its_rise():
    losses = [1.0] * 30
    losses[20] = 2.0  # 2x the trailing median: a spike, 1 nat above the best so far
    losses[25] = 1.2  # 1.2x: below the 1.25 threshold
    out = spike_stats(losses)
    assert out["loss_spikes"] == 1.0
    assert out["max_loss_rise"] == pytest.approx(1.0)


def test_spike_stats_counts_non_finite_steps_as_spikes():
    losses = [1.0] * 15 + [None, math.nan, math.inf, "nan", "inf"] + [1.0] * 5
    out = spike_stats(losses)  # "nan"/"inf": how metrics.jsonl stores non-finite numbers
    assert out["loss_spikes"] == 5.0 and out["max_loss_rise"] == 0.0


def test_spike_stats_ignores_the_first_window():
    out = spike_stats([1.0, 5.0] + [0.5] * 20)  # the early jump is before the first window
    assert out["loss_spikes"] == 0.0 and out["max_loss_rise"] == pytest.approx(4.0)


@pytest.mark.parametrize("kwargs,match", [({"window": 0}, "window"), ({"factor": 0.0}, "factor")])
def test_spike_stats_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spike_stats([1.0] * 20, **kwargs)


def test_a_spike_does_not_raise_the_bar_for_the_next():
    # the trailing median ignores one huge step, so the 2x step right after it still counts (a
    # trailing mean, 10.9 here, would hide it)
    losses = [1.0] * 20 + [100.0, 2.0] + [1.0] * 5
    assert spike_stats(losses)["loss_spikes"] == 2.0
