"""Amdahl's and Gustafson's laws of notebook 05: the fits recover a known serial fraction, the
speed-ups are computed as each law defines them, and the scaling experiment does the bookkeeping it
promises (every env step accounted for, the learner's serial time recorded) with real processes.
No assertion here depends on how fast the machine is."""

import numpy as np
import pytest

from rlteach.distributed import patterns
from rlteach.distributed.patterns import Scaling, Workload

W = np.array([1, 2, 3, 4, 8])


# ----------------------------------------------------------------------------- the laws and fits


@pytest.mark.parametrize("s", [0.0, 0.05, 0.3, 1.0])
def test_amdahl_and_gustafson_fits_recover_a_known_serial_fraction(s):
    # noise-free synthetic speed-ups: least squares is exact up to float64 rounding
    assert patterns.fit_amdahl(W, patterns.amdahl_speedup(s, W)) == pytest.approx(s, abs=1e-12)
    assert patterns.fit_gustafson(W, patterns.gustafson_speedup(s, W)) == pytest.approx(
        s, abs=1e-12
    )


def test_gustafson_speedup_is_the_scaled_work_over_the_parallel_time():
    # Gustafson (1988): a run of W workers takes serial time s plus parallel time 1 − s; one worker
    # would need s + W (1 − s) for the same work. The ratio, written out, is S = W − s (W − 1).
    s = 0.2
    np.testing.assert_allclose(patterns.gustafson_speedup(s, W), s + W * (1 - s), rtol=1e-12)


def test_gustafson_fit_with_noise_stays_close_and_rejects_a_single_worker():
    rng = np.random.default_rng(0)
    noisy = patterns.gustafson_speedup(0.25, W) * (1 + 0.01 * rng.standard_normal(len(W)))
    # 1 % noise on S ≤ 8 moves W − S by at most ~0.08 against W − 1 = 7: s moves by ~0.01
    assert patterns.fit_gustafson(W, noisy) == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="more than one worker"):
        patterns.fit_gustafson([1], [1.0])


def synthetic(work: str, serial: float, parallel: float, repeats: int = 2) -> Scaling:
    """The timings an ideal machine gives: the serial part always takes ``serial`` seconds; the
    parallel part takes ``parallel`` seconds with one worker, ``parallel / W`` with W workers when
    the work is fixed and ``parallel`` when each worker has its own share (growing work)."""
    load = Workload(work, 400, rounds=4, learner_seconds=0.01)
    parallel_time = parallel / W if work == "fixed" else np.full(len(W), parallel)
    seconds = np.tile(serial + parallel_time, (repeats, 1))
    samples = np.tile(400 if work == "fixed" else 400 * W, (repeats, 1))
    return Scaling(load, W, samples, seconds, np.full_like(seconds, serial))


@pytest.mark.parametrize("work", ["fixed", "growing"])
def test_ideal_timings_follow_the_law_and_the_fit_finds_the_measured_serial_fraction(work):
    result = synthetic(work, serial=0.5, parallel=2.0)
    s = 0.5 / 2.5  # the serial part's share of the 1-worker run
    np.testing.assert_allclose(result.measured_serial_fraction, s, rtol=1e-12)
    np.testing.assert_allclose(result.speedups[0], result.predicted_speedup(s, W), rtol=1e-12)
    np.testing.assert_allclose(result.fitted_serial_fraction, s, atol=1e-12)


def test_amdahl_speedup_is_the_time_ratio_and_the_rate_ratio():
    result = synthetic("fixed", serial=0.5, parallel=2.0)
    np.testing.assert_allclose(result.speedups, result.seconds[:, :1] / result.seconds)
    np.testing.assert_allclose(result.speedups, result.rates / result.rates[:, :1])


def test_a_run_slower_than_ideal_fits_a_larger_serial_fraction_than_measured():
    # growing work whose W-worker runs take 10 % longer per extra worker (contention): Gustafson's
    # law with the measured s over-predicts, and the fit says so with a larger s
    result = synthetic("growing", serial=0.5, parallel=2.0)
    result.seconds = result.seconds * (1 + 0.1 * (W - 1))
    assert (result.fitted_serial_fraction > result.measured_serial_fraction + 0.05).all()


# ----------------------------------------------------------------------------- bookkeeping


def test_split_evenly_sums_to_the_total_and_differs_by_at_most_one():
    for total, parts in [(10, 3), (7, 7), (5, 8), (1200, 4)]:
        shares = patterns.split_evenly(total, parts)
        assert sum(shares) == total and len(shares) == parts
        assert max(shares) - min(shares) <= 1


@pytest.mark.parametrize("workers", [1, 3, 8])
def test_fixed_work_is_split_over_the_workers_and_growing_work_is_not(workers):
    fixed = Workload("fixed", 1001, rounds=4)
    growing = Workload("growing", 1001, rounds=4)
    assert sum(sum(fixed.steps_of(w, workers)) for w in range(workers)) == 1001
    assert all(sum(growing.steps_of(w, workers)) == 1001 for w in range(workers))
    assert (fixed.law, growing.law) == ("Amdahl", "Gustafson")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(work="scaled", steps=10), "work"),
        (dict(work="fixed", steps=3, rounds=4), "steps"),
        (dict(work="fixed", steps=10, rounds=0), "rounds"),
        (dict(work="fixed", steps=10, learner_seconds=-1.0), "learner_seconds"),
        (dict(work="fixed", steps=10, delay_kind="spin"), "delay kind"),
    ],
)
def test_a_bad_workload_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Workload(**kwargs)


def test_worker_counts_must_start_at_one_and_increase():
    load = {"x": Workload("fixed", 10)}
    for counts in ([2, 4], [1, 4, 2], []):
        with pytest.raises(ValueError, match="worker_counts"):
            patterns.measure_scaling(load, counts)


LEARNER = 0.02  # CPU seconds of busy work per learner update
WORKLOADS = {
    "fixed": Workload("fixed", 30, rounds=3, learner_seconds=LEARNER, delay=0.001),
    "growing": Workload("growing", 12, rounds=3, learner_seconds=LEARNER, delay=0.001),
    "busy, no learner": Workload("growing", 10, delay=0.001, delay_kind="busy"),
}


@pytest.fixture(scope="module")
def measured():
    """One cluster of 3 worker processes runs every workload with 1, 2 and 3 workers, twice."""
    return patterns.measure_scaling(WORKLOADS, [1, 2, 3], repeats=2)


def test_every_env_step_is_counted_once(measured):
    np.testing.assert_array_equal(measured["fixed"].samples, [[30, 30, 30]] * 2)
    np.testing.assert_array_equal(measured["growing"].samples, [[12, 24, 36]] * 2)
    np.testing.assert_array_equal(measured["busy, no learner"].samples, [[10, 20, 30]] * 2)


def test_the_learner_time_is_recorded_and_is_part_of_the_run(measured):
    for label in ("fixed", "growing"):
        result = measured[label]
        # busy_wait spins for LEARNER seconds of CPU time, which takes at least as long in wall
        # time: 3 rounds take >= 3 · LEARNER (a bound from the definition, not a speed claim)
        assert (result.serial_seconds >= 3 * LEARNER).all()
        assert (result.seconds > result.serial_seconds).all()
        assert ((0 < result.measured_serial_fraction) & (result.measured_serial_fraction < 1)).all()
        np.testing.assert_allclose(result.speedups[:, 0], 1.0)
    assert (measured["busy, no learner"].serial_seconds == 0).all()
    assert (measured["busy, no learner"].measured_serial_fraction == 0).all()


# ----------------------------------------------------------------------------- figures and panel


def test_the_law_plot_draws_the_measured_and_the_fitted_law_and_a_rate_axis_for_fixed_work():
    from rlteach import plots

    result = synthetic("fixed", serial=0.5, parallel=2.0)
    fig = plots.scaling_law(result, cores=2)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "Amdahl, measured s = 0.20" in labels and "Amdahl, fitted s = 0.20" in labels
    law = next(line for line in ax.get_lines() if line.get_label().startswith("Amdahl, measured"))
    x, y = law.get_data()
    np.testing.assert_allclose(y, patterns.amdahl_speedup(0.2, x), rtol=1e-12)
    (rate_axis,) = ax.child_axes  # samples per second = rate(1) · S on the right
    assert rate_axis.get_ylabel() == "samples per second"
    growing = plots.scaling_law(synthetic("growing", serial=0.5, parallel=2.0)).axes[0]
    assert not growing.child_axes  # growing work: the rate is not rate(1) · S_G


def test_the_scaling_table_has_one_row_per_experiment_with_mean_and_range():
    from rlteach import plots

    table = plots.scaling_table(
        {"a": synthetic("fixed", 0.5, 2.0), "b": synthetic("growing", 1, 1)}
    )
    assert table.headers == [
        "experiment",
        "law",
        "S(W=2)",
        "S(W=3)",
        "S(W=4)",
        "S(W=8)",
        "s fitted",
        "s measured",
    ]
    # fixed work, s = 0.2: S(2) = 1 / (0.2 + 0.4) = 1.67 in every repeat
    assert table.rows[0][:3] == ["a", "Amdahl", "1.67 [1.67, 1.67]"]
    assert table.rows[1][-1] == "0.5 [0.5, 0.5]"


def test_the_simulator_plot_takes_repeats_and_marks_the_cores():
    from rlteach import plots

    rates = {"sleep": np.array([[100.0, 190, 380], [110, 200, 400]])}
    ax = plots.scaling([1, 2, 4], rates, cores=2).axes[0]
    assert any("os.cpu_count() = 2" in line.get_label() for line in ax.get_lines())
    bars = ax.containers[0]  # errorbar container: the mean of the repeats
    np.testing.assert_allclose(bars.lines[0].get_ydata(), [105, 195, 390])


@pytest.mark.slow
def test_the_explorer_has_a_control_per_setting_and_redraws_with_real_processes():
    from rlteach import widgets

    panel = widgets.distributed_explorer(steps=40, rounds=3)  # draws once: 4 workers, sleep
    controls = {c.description: c for c in panel.children[1].children}
    assert set(controls) == {"workers", "delay (ms)", "delay", "learner (ms)", "server"}
    assert controls["delay"].options == ("sleep", "busy")
    controls["delay"].value = "busy"  # a change redraws: both experiments run again
    assert panel.children[2].value == ""  # the status line is cleared after a successful draw


# ----------------------------------------------------------------------------- time to a return vs W
# driver.worker_scaling and driver.simulator_law (notebook 07, benchmarks/distributed_cartpole.py)


class FakeRun:
    """Stands in for run_dppo: records its keyword arguments and returns a history in which the
    last-20 mean reaches 100 at env step 1000·W (never when W = 4), at 10 s / W."""

    def __init__(self):
        self.calls = []

    def __call__(self, **kwargs):
        from types import SimpleNamespace

        from rlteach.history import History

        self.calls.append(kwargs)
        w, history = kwargs["workers"], History()
        history.log_update(env_steps=50, wall_time=0.5)
        reaching = w != 4  # the 20th episode completes the window: reached at k = 20
        for k in range(1, 21):
            history.episodes.append(
                {"env_steps": 1000 * w * k // 20, "wall_time": 10 / w * k / 20, "return": 100.0}
                if reaching
                else {"env_steps": k, "wall_time": k, "return": 0.0}
            )
        return SimpleNamespace(history=history)


def test_worker_scaling_splits_the_global_batch_and_records_when_each_run_reached_the_target():
    from rlteach.distributed.driver import worker_scaling

    run = FakeRun()
    table = worker_scaling(
        run, (1, 2, 4), seeds=[7, 8], target=100.0, delay=0.002, kind="busy", total_envs=4
    )
    assert [c["workers"] for c in run.calls] == [1, 2, 4, 1, 2, 4]  # seeds outermost
    assert [c["envs_per_worker"] for c in run.calls[:3]] == [4, 2, 1]
    assert all(c["env_delay"] == 0.002 and c["env_delay_kind"] == "busy" for c in run.calls)
    assert all(c["eval_interval"] == 0.0 for c in run.calls)
    np.testing.assert_array_equal(table["env_steps"][0], [1000, 2000, np.nan])  # W·1000
    np.testing.assert_allclose(table["seconds"][1], [10.0, 5.0, np.nan])
    np.testing.assert_array_equal(table["first_report"], np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="multiple of every W"):
        worker_scaling(run, (1, 3), seeds=[0], target=1.0, delay=0.0, total_envs=4)


def test_simulator_law_divides_the_simulated_time_by_the_workers_that_can_run_it():
    from rlteach.distributed.driver import simulator_law

    # 100 s in all, of which 10,000 steps × 8 ms = 80 s were the simulator; 20 s are fixed
    workers = [1, 2, 4, 8]
    sleep = simulator_law(100.0, 10_000, 0.008, workers, cores=2, kind="sleep")
    busy = simulator_law(100.0, 10_000, 0.008, workers, cores=2, kind="busy")
    np.testing.assert_allclose(sleep, [100.0, 60.0, 40.0, 30.0])
    np.testing.assert_allclose(busy, [100.0, 60.0, 60.0, 60.0])  # flat from W = cores


def test_delay_seconds_is_at_least_the_delay_for_a_sleep_and_about_it_for_a_busy_loop():
    from rlteach.envs import delay_seconds

    assert delay_seconds(0.001, "sleep", repeats=20) >= 0.001
    # busy_wait spins until its thread used the CPU time: wall time ≥ it, and on an idle core
    # within a few scheduler ticks of it (the bound only guards against a unit error)
    assert 0.001 <= delay_seconds(0.001, "busy", repeats=20) < 0.05


def test_the_worker_scaling_plot_shows_medians_the_law_and_counts_runs_that_never_reached():
    from rlteach import plots

    table = {
        "workers": [1, 2, 4],
        "seconds": np.array([[50.0, 30.0, np.nan], [60.0, 20.0, 10.0], [55.0, 25.0, 14.0]]),
        "env_steps": np.array([[1e4, 1.1e4, np.nan], [2e4, 0.9e4, 1e4], [1.5e4, 1e4, 1.2e4]]),
    }
    law = np.array([55.0, 30.0, 17.5])
    fig = plots.worker_scaling({"sleep": table}, {"sleep": law}, cores=2)
    left, right = fig.axes[:2]
    medians = left.containers[0].lines[0].get_ydata()  # NaN ignored: the median of the rest
    np.testing.assert_allclose(medians, [55.0, 25.0, 12.0])
    (predicted,) = [line for line in left.get_lines() if line.get_label() == "sleep: predicted"]
    np.testing.assert_allclose(predicted.get_ydata(), law)
    assert "1 of the runs never reached it" in left.containers[0].get_label()
    one_worker = [line for line in right.get_lines() if line.get_linestyle() == ":"]
    np.testing.assert_allclose(one_worker[0].get_ydata(), [1.5e4, 1.5e4])  # 1-worker median


def test_the_worker_scaling_table_gives_medians_of_the_seeds_that_reached_and_the_speed_up():
    from rlteach import plots

    table = {
        "workers": [1, 2],
        "seconds": np.array([[50.0, np.nan], [60.0, 20.0], [55.0, 30.0]]),
        "env_steps": np.array([[1e4, np.nan], [2e4, 1e4], [1.5e4, 1.2e4]]),
    }
    rows = plots.worker_scaling_table({"sleep": table}, {"sleep": [55.0, 30.0]}).rows
    assert rows[0][2:5] == ["3 of 3", "55 [50, 60]", "1.5e+04 [1e+04, 2e+04]"]
    # W = 2: the two seeds that reached it, median 25; speed-up 55 / 25
    assert rows[1][2:] == ["2 of 3", "25 [20, 30]", "1.1e+04 [1e+04, 1.2e+04]", "2.20×", "30"]
