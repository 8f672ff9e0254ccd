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
