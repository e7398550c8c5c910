"""A model's pace (seconds per work unit) from the requests that leave it, on a clock the test
moves by hand."""

from __future__ import annotations

import pytest

from app.pace import Pace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def busy_pace() -> tuple[Clock, Pace]:
    """A pace on a hand-moved clock, its model just turned busy."""
    clock = Clock()
    pace = Pace(clock)
    pace.busy()
    return clock, pace


def test_unknown_until_a_request_has_left() -> None:
    pace = Pace(Clock())
    assert pace.seconds_per_unit is None and pace.wait_s(1000) is None


def test_one_request_at_a_time_gives_its_time_per_unit() -> None:
    clock, pace = busy_pace()
    clock.now += 8.0
    pace.left(4_000_000, done=True)  # 8 s for 4 Mpx-eq.
    assert pace.seconds_per_unit == pytest.approx(2e-6)
    assert pace.wait_s(10_000_000) == pytest.approx(20.0)


def test_queued_requests_count_the_time_between_departures() -> None:
    """Two requests admitted together, 10 s each on the model: the second's interval starts when
    the first leaves, not when it arrived."""
    clock, pace = busy_pace()
    clock.now += 10.0
    pace.left(1_000_000, done=True)
    clock.now += 10.0
    pace.left(1_000_000, done=True)
    assert pace.seconds_per_unit == pytest.approx(1e-5, rel=0.01)


def test_a_batch_leaving_together_averages_to_its_time_per_unit() -> None:
    clock, pace = busy_pace()
    clock.now += 0.016  # one batch of 16 requests of 1000 units: 1 µs a unit
    for _ in range(16):
        pace.left(1000, done=True)
    # a mean of per-request ratios would say 16 µs for the first and 0 for the rest
    assert pace.seconds_per_unit == pytest.approx(1e-6, rel=0.01)


def test_a_failed_request_leaves_its_time_to_the_next_answered_one() -> None:
    """A request that timed out in the queue took no model time: the one running meanwhile did."""
    clock, pace = busy_pace()
    clock.now += 4.0
    pace.left(1000, done=True)  # 4 ms a unit
    clock.now += 1.0
    pace.left(1000, done=False)  # timed out while queued: teaches nothing, ends nothing
    assert pace.elapsed_s() == pytest.approx(1.0)  # the running request's time goes on
    clock.now += 3.0
    pace.left(1000, done=True)  # 4 s since the last answer: 4 ms a unit still
    assert pace.seconds_per_unit == pytest.approx(4e-3)


def test_the_recent_past_weighs_most() -> None:
    clock, pace = busy_pace()
    for _ in range(3):  # 1 ms a unit
        clock.now += 1.0
        pace.left(1000, done=True)
    for _ in range(30):  # then 10 ms a unit (the machine got busier): 300 s, ten half-lives
        clock.now += 10.0
        pace.left(1000, done=True)
    assert pace.seconds_per_unit == pytest.approx(1e-2, rel=0.01)


def test_the_past_counts_half_after_30_s_of_busy_time() -> None:
    """The documented fading (docs/serving.md): by half every 30 s the model is busy."""
    clock, pace = busy_pace()
    clock.now += 30.0
    pace.left(1000, done=True)  # 30 ms a unit
    clock.now += 30.0
    pace.left(3000, done=True)  # 10 ms a unit; the first now weighs half
    assert pace.seconds_per_unit == pytest.approx((15.0 + 30.0) / (500 + 3000))
