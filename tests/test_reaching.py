"""When a run first reaches a return level: steps_to, seconds_to, env_steps_per_second and the
StopAtReturn callback (notebook 06, sample efficiency and time against the number of workers)."""

import math

import numpy as np
import pytest

import rlteach
from rlteach.history import (
    History,
    StopAtReturn,
    env_steps_per_second,
    seconds_to,
    steps_to,
)

RETURNS = [10, 30, 50, 20, 60, 70, 90, 40, 100, 100]


def history_of(returns, startup=None) -> History:
    """One episode per 100 env steps, ending at wall-clock 0.5 s per episode."""
    h = History()
    for i, ret in enumerate(returns):
        h.episodes.append({"env_steps": 100 * (i + 1), "wall_time": 0.5 * (i + 1), "return": ret})
    if startup is not None:
        h.meta["startup_seconds"] = startup
    return h


def first_trailing_mean_at_least(returns, level, last):
    """Index of the first episode whose trailing mean of ``last`` returns is >= level, by a loop."""
    for end in range(last, len(returns) + 1):
        if sum(returns[end - last : end]) / last >= level:
            return end - 1
    return None


@pytest.mark.parametrize("level", [25, 50, 65, 75, 100])
def test_steps_and_seconds_match_a_loop_over_trailing_means(level):
    h = history_of(RETURNS, startup=0.25)
    index = first_trailing_mean_at_least(RETURNS, level, last=3)
    if index is None:
        assert math.isnan(steps_to(h, level, last=3))
        assert math.isnan(seconds_to(h, level, last=3))
    else:
        # exact: steps are integers and 0.5 * k - 0.25 is exact in binary floating point
        assert steps_to(h, level, last=3) == 100 * (index + 1)
        assert seconds_to(h, level, last=3) == 0.5 * (index + 1) - 0.25


@pytest.mark.parametrize("last", [1, 3, 7, 20])
def test_a_window_exactly_at_the_level_reaches_it(last):
    """The boundary: ``last`` returns of exactly 475 reach 475 on the episode that fills the
    window (a mean computed as Σ r · (1/last) falls short by a rounding for last = 3 and 7)."""
    history = history_of([0] * 5 + [475] * last)
    assert history.first_reaching(475, last) is history.episodes[4 + last]
    assert history.first_reaching(475.001, last) is None


def test_first_reaching_returns_the_row_that_completes_the_first_window_and_none_otherwise():
    """The row itself (its env steps and wall time say when), the first of several windows at
    the level, a window that needs every episode, and None for too few or too low returns."""
    history = history_of([10, 20, 30, 40, 30, 20])
    assert history.first_reaching(30, last=3) is history.episodes[3]  # (20 + 30 + 40) / 3
    assert history.first_reaching(25, last=6) is history.episodes[5]  # all six: 150 / 6
    assert history.first_reaching(26, last=6) is None
    assert history.first_reaching(10, last=7) is None  # fewer episodes than the window
    assert History().first_reaching(0) is None


def test_seconds_count_from_zero_without_a_recorded_start_up():
    h = history_of(RETURNS)
    assert seconds_to(h, 50, last=3) == 0.5 * (first_trailing_mean_at_least(RETURNS, 50, 3) + 1)


def test_fewer_episodes_than_the_window_never_reach():
    assert math.isnan(steps_to(history_of([500, 500]), 100, last=3))


def test_throughput_is_steps_over_seconds_between_first_and_last_update():
    h = History()
    for steps, t in [(64, 2.0), (128, 2.5), (640, 6.0)]:
        h.log_update(env_steps=steps, wall_time=t)
    assert env_steps_per_second(h) == pytest.approx((640 - 64) / (6.0 - 2.0), rel=1e-12)
    assert math.isnan(env_steps_per_second(History()))


def test_stop_fires_once_when_the_trailing_mean_first_reaches_the_level():
    stop = StopAtReturn(65, last=3)
    h = History()
    fired_at = []
    for i, ret in enumerate(RETURNS):
        h.episodes.append({"env_steps": 100 * (i + 1), "wall_time": 0.0, "return": ret})
        try:
            stop(h)
        except KeyboardInterrupt:
            fired_at.append(i)
    assert fired_at == [first_trailing_mean_at_least(RETURNS, 65, last=3)]


def test_stop_waits_for_a_full_window():
    stop = StopAtReturn(100, last=3)
    stop(history_of([500, 500]))  # two episodes: the window of three is not full, no stop
    with pytest.raises(KeyboardInterrupt):
        stop(history_of([500, 500, 500]))


def test_a_trainer_stopped_by_the_callback_returns_early_at_the_level():
    level, budget = 30.0, 50_000
    result = rlteach.train_a2c(total_steps=budget, seed=0, callback=StopAtReturn(level))
    h = result.history
    assert result.interrupted
    assert h.updates[-1]["env_steps"] < budget
    # the trailing mean reached the level within the last update's episodes
    assert h.recent_mean_return() >= level
    reached = steps_to(h, level)
    assert not math.isnan(reached) and reached <= h.updates[-1]["env_steps"]
    assert np.isfinite(env_steps_per_second(h))


@pytest.mark.slow
def test_a_distributed_run_stopped_by_the_callback_keeps_its_record():
    from rlteach.distributed.da3c import run_da3c

    # a random CartPole policy averages about 22: a level of 30 is reached within a few pushes
    level, budget = 30.0, 40_000
    result = run_da3c(
        workers=1, total_steps=budget, seed=0, eval_interval=0, callback=StopAtReturn(level)
    )
    h = result.history
    assert result.interrupted
    assert h.updates[-1]["env_steps"] < budget
    assert steps_to(h, level) <= h.updates[-1]["env_steps"]
    assert h.meta["versions"] >= 1 and len(h.meta["staleness"]) == h.meta["pushes_applied"]
