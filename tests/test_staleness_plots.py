"""The figure and table of notebook 06's staleness sweep, on made-up histories."""

import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure

from rlteach import plots
from rlteach.history import History


def fake_run(returns, kls=None) -> History:
    """A History with the given episode returns and, unless None, ``kl_stale`` update rows."""
    history = History()
    history.log_episodes(returns, [10] * len(returns), env_steps=100)
    for kl in kls if kls is not None else [None, None]:
        history.log_update(env_steps=100, **({} if kl is None else {"kl_stale": kl}))
    return history


RNG = np.random.default_rng(0)
SWEEP = {
    k: [fake_run(RNG.uniform(0, 500, 60), None if k == 0 else RNG.uniform(0, 0.1, 5)) for _ in "ab"]
    for k in (0, 4, 16)
}


def test_outcomes_are_each_seeds_last_returns_and_mean_kl():
    outcomes = plots.staleness_outcomes(SWEEP, last=50)
    assert list(outcomes) == [0, 4, 16]
    for k, (returns, kls) in outcomes.items():
        for history, ret, kl in zip(SWEEP[k], returns, kls, strict=True):
            episodes = [row["return"] for row in history.episodes]
            assert ret == pytest.approx(sum(episodes[-50:]) / 50, rel=1e-12)
            rows = [row["kl_stale"] for row in history.updates if "kl_stale" in row]
            assert kl == (0.0 if k == 0 else pytest.approx(sum(rows) / len(rows), rel=1e-12))


def test_sweep_figure_has_return_and_kl_panels_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.staleness_sweep({"stale": SWEEP, "corrected": {16: SWEEP[16]}})
    assert isinstance(fig, Figure)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["0", "4", "16"]
    # each label's mean line passes through the mean over seeds at each of its k
    outcomes = plots.staleness_outcomes(SWEEP)
    means = [outcomes[k][0].mean() for k in (0, 4, 16)]
    lines = [line.get_ydata() for line in left.get_lines() if len(line.get_ydata()) == 3]
    assert any(np.allclose(ydata, means) for ydata in lines)
    assert len(fig.legends[0].get_texts()) == 2


def test_table_lists_every_label_and_k():
    table = plots.staleness_table({"stale": SWEEP, "corrected": {16: SWEEP[16]}})
    assert [row[:2] for row in table.rows] == [
        ["stale", "0"],
        ["stale", "4"],
        ["stale", "16"],
        ["corrected", "16"],
    ]


def design_run(algorithm: str, staleness: list[int]) -> History:
    """A made-up run of notebook 09's designs: IMPALA's lags in ``meta``, learner rows without a
    worker; the others' staleness in per-worker update rows."""
    history = History(meta={"algorithm": algorithm})
    history.log_episodes([10.0, 20.0], [10, 20], env_steps=30, worker=0)
    if algorithm == "impala":
        history.meta["lags"] = staleness
        for version in (1, 2):
            history.log_update(env_steps=30, version=version, lag=1.0)
    else:
        for version, stale in enumerate(staleness, start=1):
            history.log_update(env_steps=30, version=version, staleness=stale, worker=version % 2)
    return history


def bar_heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_staleness_by_design_counts_impalas_lags_and_the_others_staleness():
    runs = {
        "A3C": [design_run("a3c", [0, 1, 1]), design_run("a3c", [0])],
        "IMPALA": [design_run("impala", [2, 2, 3]), design_run("impala", [0])],
    }
    fig = plots.staleness_by_design(runs)
    a3c, impala = fig.axes
    assert bar_heights(a3c) == [2, 2]  # staleness 0 twice, 1 twice, over both seeds
    assert bar_heights(impala) == [1, 0, 2, 1]  # lags 0, 2, 2, 3
    assert (
        impala.get_title().startswith("IMPALA: policy lag") and "A3C: staleness" in a3c.get_title()
    )
    # Hogwild A3C has no server and pushes nothing: its axes count updates after a read of θ
    assert "server" not in a3c.get_xlabel() and a3c.get_ylabel() == "updates"
    da3c = plots.staleness_by_design({"DA3C": [design_run("da3c", [0, 1])]}).axes[0]
    assert "server" in da3c.get_xlabel() and da3c.get_ylabel() == "pushes"


@pytest.mark.parametrize(
    "algorithm, title",
    [("impala", "policy lag of the segments"), ("a3c", "staleness of the updates")],
)
def test_the_dashboard_draws_each_designs_own_staleness(algorithm, title):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.distributed_dashboard(design_run(algorithm, [0, 1, 1]), title="my run")
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith(title) for t in titles), titles
    assert fig.get_suptitle().startswith("my run — "), fig.get_suptitle()  # the caller's title
    who = "learner" if algorithm == "impala" else "shared θ"
    assert any(t.startswith(f"{who} updates") for t in titles), titles


def test_staleness_histograms_tick_whole_versions_only():
    """Two bars (staleness 0 and 1) would get ticks at 0.25, 0.5, …; a staleness is a count."""
    fig = plots.staleness_histogram([0, 1, 1, 1])
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and np.array_equal(ticks, np.round(ticks))
