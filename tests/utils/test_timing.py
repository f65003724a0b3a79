import time

import pytest

from dltricks.utils.timing import interleaved_ms, sample_ms, summarize_ms, time_ms, timed_call


def test_timed_call_measures_a_known_sleep_and_passes_the_result():
    ms, result = timed_call(lambda: (time.sleep(0.02), 7)[1])
    assert result == 7
    assert 20.0 <= ms < 2000.0


def test_sample_ms_calls_warmup_plus_repeats_times():
    calls = []
    times = sample_ms(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(times) == 4


def test_time_ms_min_and_median_of_known_sleeps():
    delays = iter([0.03, 0.001, 0.001, 0.03, 0.03])  # warmup, then four timed calls
    fn = lambda: time.sleep(next(delays))  # noqa: E731
    assert time_ms(fn, repeats=4, warmup=1) < 25.0  # the minimum ignores the slow calls
    delays = iter([0.001, 0.03, 0.03, 0.001])
    assert time_ms(lambda: time.sleep(next(delays)), repeats=3, warmup=1,
                   statistic="median") >= 29.0


def test_summarize_closed_form():
    s = summarize_ms([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "mean": 3.0, "n": 5.0}
    assert summarize_ms([2.0])["q3"] == 2.0


def test_interleaved_rotates_the_order_every_round():
    order = []
    fns = {k: (lambda k=k: order.append(k)) for k in "abc"}
    times = interleaved_ms(fns, rounds=3, warmup=1)
    assert order == list("abc" "bca" "cab" "abc")
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_interleaved_attributes_time_to_the_right_function():
    times = interleaved_ms({"slow": lambda: time.sleep(0.02), "fast": lambda: None}, rounds=3)
    assert min(times["slow"]) >= 20.0 > max(times["fast"])


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        sample_ms(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        interleaved_ms({"a": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="statistic"):
        time_ms(lambda: None, statistic="mean")
    with pytest.raises(ValueError, match="at least one"):
        summarize_ms([])
