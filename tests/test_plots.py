"""Learning curves, diagnostics, the dashboard and the throttled live plot draw what the run holds."""

import base64
import types

import ipywidgets as W
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from rlteach import plots
from rlteach.history import History
from rlteach.plots import live as plots_live

# Every comparison below is between float64 arrays computed by two routes (numpy vectorised vs a
# plain loop, or interpolation of the same points), so they agree to rounding: rtol=1e-12.
TIGHT = dict(rtol=1e-12, atol=1e-12)


def fake_history(seed=0, updates=30, episodes_per_update=3, steps_per_update=100, dt=0.5):
    """A run whose episodes end at each update's env_steps and wall_time (as trainers log them)."""
    rng = np.random.default_rng(seed)
    history = History()
    for u in range(updates):
        steps, now = (u + 1) * steps_per_update, (u + 1) * dt
        history.log_update(
            env_steps=steps,
            wall_time=now,
            policy_objective=float(rng.normal()),
            entropy=float(rng.random()),
            phase="rollout",
            early_stop=False,
        )
        for _ in range(episodes_per_update):
            history.episodes.append(
                {
                    "env_steps": steps,
                    "wall_time": now,
                    "return": float(rng.normal(u, 3)),
                    "length": 9,
                }
            )
    return history


def loop_moving_average(values, window):
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return np.array(out)


def line(ax, label):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return found


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize("window", [1, 4, 50])
def test_moving_average_matches_a_loop(window):
    values = np.random.default_rng(1).normal(size=30)
    np.testing.assert_allclose(
        plots.moving_average(values, window), loop_moving_average(list(values), window), **TIGHT
    )


@pytest.mark.parametrize("x", ["env_steps", "wall_time"])
def test_one_history_shows_raw_returns_and_their_moving_average(x):
    history = fake_history()
    fig = plots.learning_curves({"ppo": history}, x=x, smooth=5)
    ax = fig.axes[0]
    returns = [row["return"] for row in history.episodes]
    xs = [row[x] for row in history.episodes]
    smoothed = line(ax, "ppo")
    np.testing.assert_allclose(smoothed.get_xdata(), xs, **TIGHT)
    np.testing.assert_allclose(smoothed.get_ydata(), loop_moving_average(returns, 5), **TIGHT)
    np.testing.assert_allclose(line(ax, "_ppo episodes").get_ydata(), returns, **TIGHT)
    assert ax.get_xlabel() == plots.LEARNING_X[x]
    assert legend_texts(ax) == ["ppo"]


@pytest.mark.parametrize("x", ["env_steps", "wall_time"])
def test_three_seeds_show_the_mean_of_smoothed_curves_and_a_min_max_band(x):
    seeds = [
        fake_history(0, updates=30),
        fake_history(1, updates=25, dt=0.6),
        fake_history(2, updates=40, dt=0.4),
    ]
    fig = plots.learning_curves({"a2c": seeds}, x=x, smooth=4)
    ax = fig.axes[0]
    curves = []
    for h in seeds:
        xs = [row[x] for row in h.episodes]
        smoothed = loop_moving_average([row["return"] for row in h.episodes], 4)
        last = {xi: yi for xi, yi in zip(xs, smoothed, strict=True)}  # last value at each x
        curves.append((np.array(list(last)), np.array(list(last.values()))))
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    grid = np.linspace(lo, hi, 200)
    on_grid = np.array([np.interp(grid, cx, cy) for cx, cy in curves])
    mean = line(ax, "a2c: mean of 3 seeds")
    np.testing.assert_allclose(mean.get_xdata(), grid, **TIGHT)
    np.testing.assert_allclose(mean.get_ydata(), on_grid.mean(axis=0), **TIGHT)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    band_y = band.get_paths()[0].vertices[:, 1]
    assert band_y.min() == pytest.approx(on_grid.min(), rel=1e-12)
    assert band_y.max() == pytest.approx(on_grid.max(), rel=1e-12)
    assert len([ln for ln in ax.get_lines() if ln.get_label() == "_a2c seed"]) == 3
    assert legend_texts(ax) == ["a2c: mean of 3 seeds", "a2c: min–max over seeds"]


def test_std_band_spans_one_standard_deviation_and_says_so():
    seeds = [fake_history(s) for s in range(3)]
    ax = plots.learning_curves({"r": seeds}, band="std", smooth=3).axes[0]
    steps = np.arange(1, 31) * 100.0  # every seed logs its 3 episodes at these env steps
    curves = [loop_moving_average([row["return"] for row in h.episodes], 3)[2::3] for h in seeds]
    grid = np.linspace(steps[0], steps[-1], 200)
    on_grid = np.array([np.interp(grid, steps, c) for c in curves])
    band_y = ax.collections[0].get_paths()[0].vertices[:, 1]
    spread = on_grid.std(axis=0)
    assert band_y.max() == pytest.approx((on_grid.mean(axis=0) + spread).max(), rel=1e-12)
    assert band_y.min() == pytest.approx((on_grid.mean(axis=0) - spread).min(), rel=1e-12)
    assert "r: ±1 std over seeds" in legend_texts(ax)


def test_histories_without_episodes_are_listed_not_crashed_on():
    empty = History()
    fig = plots.learning_curves({"new": empty, "seeds": [History(), History()]})
    assert legend_texts(fig.axes[0]) == ["new (no episodes yet)", "seeds (no episodes yet)"]
    partly = plots.learning_curves({"s": [History(), fake_history()]}).axes[0]
    assert "s: mean of 1 seeds" in legend_texts(partly)
    assert plots.diagnostics(empty).axes[0].texts[0].get_text() == "no updates yet"
    assert "0 episodes" in plots.learning_dashboard(empty, title="new")._suptitle.get_text()


def test_bad_arguments_name_the_argument_and_what_is_allowed():
    with pytest.raises(ValueError, match="x = 'steps'.*env_steps, wall_time"):
        plots.learning_curves({"a": History()}, x="steps")
    with pytest.raises(ValueError, match="smooth = 0"):
        plots.learning_curves({"a": History()}, smooth=0)
    with pytest.raises(ValueError, match="band = 'iqr'"):
        plots.learning_curves({"a": History()}, band="iqr")
    with pytest.raises(ValueError, match=r"runs\['a'\].*History"):
        plots.learning_curves({"a": [1, 2]})
    with pytest.raises(ValueError, match="runs = History.*non-empty dict"):
        plots.learning_curves(History())
    with pytest.raises(ValueError, match="axes holds 1 axes: 2 are needed"):
        plots.diagnostics(fake_history(), axes=[Figure().add_subplot()])
    with pytest.raises(ValueError, match="value_loss not among"):
        plots.diagnostics(fake_history(), keys=["value_loss"])


def test_diagnostics_draw_every_numeric_update_field_against_env_steps():
    history = fake_history()
    fig = plots.diagnostics(history)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["policy_objective", "entropy"]  # not str, not bool
    for ax in panels:
        (drawn,) = ax.get_lines()
        key = ax.get_title()
        np.testing.assert_allclose(drawn.get_xdata(), [r["env_steps"] for r in history.updates])
        np.testing.assert_allclose(drawn.get_ydata(), [r[key] for r in history.updates])
    chosen = plots.diagnostics(history, keys=["entropy"])
    assert [ax.get_title() for ax in chosen.axes] == ["entropy"]


def test_dashboard_has_a_learning_curve_and_the_key_diagnostics():
    fig = plots.learning_dashboard(fake_history(), title="PPO")
    titles = [ax.get_title() for ax in fig.get_axes() if ax.get_visible()]
    assert titles == ["learning curve", "policy_objective", "entropy"]
    assert fig._suptitle.get_text().startswith("PPO — 3,000 env steps · 90 episodes")


def test_live_plot_redraws_once_per_interval_and_always_on_close():
    live = plots.LivePlot(title="t", min_interval=10)
    history = fake_history(updates=3)
    for _ in range(100):  # far less than 10 s
        live(history)
    assert live.redraws == 1
    live.close(history)
    assert live.redraws == 2
    assert isinstance(live.figure, Figure)
    assert not plots.in_kernel()  # headless: the figures were drawn and kept, not displayed


def test_live_plot_updates_one_display_handle_in_a_kernel(monkeypatch):
    shown, updated = [], []
    handle = types.SimpleNamespace(update=updated.append)

    def fake_display(fig, display_id):
        shown.append((fig, display_id))
        return handle

    kernel_shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setattr(plots_live.IPython, "get_ipython", lambda: kernel_shell)
    monkeypatch.setattr(plots_live, "display", fake_display)
    live = plots.LivePlot(min_interval=0, max_share=1.0)
    history = fake_history(updates=2)
    live(history)
    first = live.figure
    live(history)
    live.close(history)
    assert shown == [(first, True)]
    assert updated[-1] is live.figure and len(updated) == 2


def test_live_plot_with_an_output_widget_replaces_its_content_by_each_figure(monkeypatch):
    formatted = []

    def fake_format(fig):  # what IPython's formatters give for a Figure under %matplotlib inline
        formatted.append(fig)
        return {"image/png": bytes([137, 80, 78, len(formatted)]), "text/plain": "<Figure>"}, {}

    kernel_shell = types.SimpleNamespace(
        kernel=object(), display_formatter=types.SimpleNamespace(format=fake_format)
    )
    monkeypatch.setattr(plots_live.IPython, "get_ipython", lambda: kernel_shell)
    monkeypatch.setattr(
        plots_live, "display", lambda *a, **k: pytest.fail("a display handle was used")
    )
    output = W.Output()
    live = plots.LivePlot(min_interval=0, max_share=1.0, output=output)
    history = fake_history(updates=2)
    live(history)
    live.close(history)
    assert len(formatted) == 2 and formatted[-1] is live.figure
    png = base64.b64encode(bytes([137, 80, 78, 2])).decode("ascii")  # the second figure's bytes
    assert output.outputs == (
        {
            "output_type": "display_data",
            "data": {"image/png": png, "text/plain": "<Figure>"},
            "metadata": {},
        },
    )


def test_live_plot_spends_at_most_max_share_of_the_time_drawing(monkeypatch):
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(plots_live, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))

    def slow_dashboard(history, title):  # one redraw costs 1 (fake) second
        clock.now += 1.0
        return Figure()

    monkeypatch.setattr(plots_live, "learning_dashboard", slow_dashboard)
    live = plots.LivePlot(min_interval=0, max_share=0.1)
    for _ in range(400):  # 0.5 s of training between callbacks, 200 s in all
        clock.now += 0.5
        live(History())
    # A redraw waits cost / max_share = 10 s after the previous one started, so drawing takes
    # at most 1 s in every 10 s, plus the one redraw that may be in progress at the end.
    assert live.drawing_seconds <= 0.1 * clock.now + 1.0
    assert live.redraws >= 0.1 * clock.now - 2  # and it does keep drawing at that rate


def test_live_plot_rejects_bad_settings():
    with pytest.raises(ValueError, match="min_interval = -1"):
        plots.LivePlot(min_interval=-1)
    with pytest.raises(ValueError, match="max_share = 0"):
        plots.LivePlot(max_share=0)


def test_clip_objective_shades_exactly_where_the_clip_stops_the_gradient():
    import numpy as np

    fig = plots.clip_objective(clip_eps=0.2)
    positive, negative = fig.axes[:2]
    for ax, flat_side in ((positive, lambda r: r > 1.2), (negative, lambda r: r < 0.8)):
        line = ax.get_lines()[0]
        ratios, values = line.get_xdata(), line.get_ydata()
        sign = 1 if ax is positive else -1
        np.testing.assert_allclose(
            values, sign * np.where(flat_side(ratios), 1 + 0.2 * sign, ratios), atol=1e-6
        )


def test_bias_variance_marks_the_smallest_mean_squared_error():
    stats = [{"bias2": b, "variance": v} for b, v in [(1.0, 0.1), (0.2, 0.3), (0.01, 2.0)]]
    fig = plots.bias_variance(stats, [0.0, 0.5, 1.0], "λ")
    (vline,) = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":"]
    assert vline.get_xdata()[0] == 0.5


def test_the_distributed_dashboard_of_a_run_without_data_yet_warns_nothing():
    """A live plot's first frame comes before any episode or push: no empty-legend warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.distributed_dashboard(History())
