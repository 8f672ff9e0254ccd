"""Every figure the notebooks show.

Figures are plain ``matplotlib.figure.Figure`` objects (not pyplot-managed): a notebook shows one by
leaving it as the cell's last expression or by ``display(fig)``, with ``%matplotlib inline`` and
headless alike, and nothing accumulates in pyplot's figure list. Functions that draw into an axis take
an optional ``ax`` so panels can be combined.
"""

from __future__ import annotations

import base64
import html
import math
import time
import warnings
from itertools import cycle

import IPython
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from rlteach.history import History

Palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    """A new ``Figure`` with a grid of axes, ``(fig, axes)``; ``axes`` is flat when the grid is."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, (axes[0, 0] if nrows == ncols == 1 else axes.ravel())


def _axis(ax, **figure_kwargs):
    if ax is not None:
        return ax.figure, ax
    return figure(**figure_kwargs)


def _legend_if_labelled(ax) -> None:
    """A legend once something labelled is drawn: a live plot's first frame may have nothing yet,
    and matplotlib warns about an empty legend."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


class Table:
    """A small table that renders as HTML in a notebook and as aligned text elsewhere."""

    def __init__(self, rows, headers, digits: int = 6):
        self.rows = [[self._cell(v, digits) for v in row] for row in rows]
        self.headers = list(headers)

    @staticmethod
    def _cell(value, digits):
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}g}"
        return str(value)

    def __repr__(self):
        widths = [
            max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))
        ]
        lines = ["  ".join(h.rjust(w) for h, w in zip(self.headers, widths, strict=True))]
        lines += [
            "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in self.rows
        ]
        return "\n".join(lines)

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def running_estimate(samples, exact: float, ax=None, label: str = "running mean", title: str = ""):
    """Running mean of scalar ``samples[N]`` with a ±2 standard-error band, against ``exact``.

    Shows a Monte Carlo estimate settling on the closed-form value (notebook 01, step 1–2).
    """
    fig, ax = _axis(ax)
    x = np.asarray(samples, dtype=float)
    n = np.arange(1, len(x) + 1)
    mean = np.cumsum(x) / n
    sq = np.cumsum(x**2) / n
    se = np.sqrt(np.maximum(sq - mean**2, 0.0) / np.maximum(n - 1, 1))
    ax.plot(n, mean, color=Palette[0], label=label)
    ax.fill_between(
        n[1:],
        (mean - 2 * se)[1:],
        (mean + 2 * se)[1:],
        color=Palette[0],
        alpha=0.2,
        label="±2 standard errors",
    )
    ax.axhline(exact, color="black", ls="--", lw=1, label=f"exact = {exact:.4g}")
    ax.set_xscale("log")
    ax.set_xlabel("episodes")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return fig


def error_vs_samples(curves: dict, ax=None, title: str = "REINFORCE error vs batch size"):
    """Log-log RMS error against the number of episodes, one line per estimator.

    ``curves`` maps a label to a dict with ``counts`` and ``rmse`` (as made by
    ``tabular.estimator_error_curves``), and optionally ``rmse_se``, drawn as ±1 standard error
    bars. Each label gets its fitted slope; a dashed ``1/√N`` guide is drawn through the first
    curve's first point.
    """
    fig, ax = _axis(ax)
    for color, (label, curve) in zip(cycle(Palette), curves.items()):
        counts, rmse = np.asarray(curve["counts"]), np.asarray(curve["rmse"])
        slope = np.polyfit(np.log(counts), np.log(rmse), 1)[0]
        label = f"{label} (slope {slope:.2f})"
        ax.errorbar(
            counts, rmse, curve.get("rmse_se"), fmt="o-", color=color, capsize=3, label=label
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    first = next(iter(curves.values()))
    c0, e0 = first["counts"][0], first["rmse"][0]
    guide = np.asarray(first["counts"], dtype=float)
    ax.loglog(guide, e0 * np.sqrt(c0 / guide), "k--", lw=1, label=r"$\propto 1/\sqrt{N}$")
    ax.set_xticks(guide, [f"{c:g}" for c in guide])  # label the batch sizes themselves
    ax.minorticks_off()  # a third of the drawing time otherwise, for the panel that redraws it
    ax.set_xlabel("episodes per estimate N")
    ax.set_ylabel(r"RMS error $\|\hat g - \nabla J\|$")
    ax.set_title(title)
    # below the axes: inside, it hides a line at some N whatever corner it picks
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    return fig


def variance_bars(
    variances: dict, ax=None, title: str = "variance per episode", errors: dict | None = None
):
    """Bar chart of per-episode estimator variances (trace of the covariance), log scale.

    ``errors`` (label → standard error of that variance) adds ±1 standard error bars, and the
    labels on the bars read ``value ± error``."""
    fig, ax = _axis(ax)
    labels = list(variances)
    yerr = None if errors is None else [errors[k] for k in labels]
    bars = ax.bar(
        labels, [variances[k] for k in labels], yerr=yerr, capsize=4, color=Palette[: len(labels)]
    )
    texts = [f"{variances[k]:.4g}" + (f" ± {errors[k]:.2g}" if errors else "") for k in labels]
    ax.bar_label(bars, texts, fontsize="small")
    ax.set_yscale("log")
    ax.minorticks_off()  # the labels give the values; minor ticks only slow a redraw
    # bars start a decade below the smallest, so their heights compare as ratios on the log axis
    ax.set_ylim(min(variances.values()) / 10, max(variances.values()) * 3)
    ax.set_ylabel(r"tr Cov$[\hat g]$ (one episode)")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=15)
    return fig


def gamma_t_bias(
    gammas, series: dict, title: str = "dropping γ^t: the seed's estimator", at=None, axes=None
):
    """Two panels against γ, one line per MDP (notebook 01, step 6): the angle between the seed's
    form and ∇J (left), and the norm ratio ``|g_seed| / |∇J|`` next to the cut ``H(1−γ)`` of
    eq. 1.11 (right, dashed).

    ``series`` maps a label to one ``tabular.seed_form_comparison`` dict per γ of ``gammas``.
    ``at = (γ, {label: comparison})`` marks one γ on both panels (the widget's slider). Draws into
    ``axes`` (two axes) when given, else into a new figure.
    """
    fig, (left, right) = (axes[0].figure, axes) if axes is not None else figure(ncols=2, width=4.6)
    for color, (label, rows) in zip(cycle(Palette), series.items()):
        left.plot(gammas, [r["angle"] for r in rows], "o-", color=color, ms=4, label=label)
        right.semilogy(
            gammas, [r["norm_ratio"] for r in rows], "o-", color=color, ms=4, label=label
        )
        if at is not None:
            mark = at[1][label]
            left.plot(at[0], mark["angle"], "s", color=color, ms=10, mec="black")
            right.plot(at[0], mark["norm_ratio"], "s", color=color, ms=10, mec="black")
    cuts = [r["cut"] for r in next(iter(series.values()))]
    right.semilogy(gammas, cuts, "k--", lw=1, label="H(1−γ), H = the horizon cut")
    left.set_ylabel("angle to ∇J (degrees)")
    right.set_ylabel("|g_seed| / |∇J|")
    for ax in (left, right):
        if at is not None:
            ax.axvline(at[0], color="gray", lw=0.8)
        ax.set_xlabel("γ")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def gradient_directions(exact, seed_form, ax=None, title: str = ""):
    """Bars of the unit vectors ``∇J/|∇J|`` and ``g_seed/|g_seed|``, one pair per entry ``(s, a)``
    of the ``[S, A]`` gradients: which states each update cares about (notebook 01, step 6)."""
    fig, ax = _axis(ax)
    S, A = exact.shape
    x = np.arange(S * A)
    for shift, (label, g) in zip((-0.2, 0.2), (("∇J", exact), ("g_seed", seed_form)), strict=True):
        unit = (g / g.norm()).flatten().numpy()
        ax.bar(x + shift, unit, width=0.4, label=f"{label} / |{label}|")
    ax.set_xticks(x, [f"{s},{a}" for s in range(S) for a in range(A)], fontsize="small")
    ax.set_xlabel("entry (s, a) of θ")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def reinforce_variants(
    mdp, theta, variants: dict, counts, repeats: int = 20, seed: int = 0, title: str = ""
):
    """Error-vs-N curves (left) and per-episode variances (right) for REINFORCE variants.

    ``variants`` maps a label to keyword options of ``tabular.episode_gradients``
    (``reward_to_go``, ``baseline``, ``gamma_t``), all computed on the same sampled episodes.
    Notebook 01, step 5 and its widget panel.
    """
    from rlteach import tabular

    curves = tabular.estimator_error_curves(mdp, theta, variants, counts, repeats, seed)
    fig, (left, right) = figure(ncols=2, width=5.0)
    error_vs_samples(curves, ax=left, title=f"error vs episodes ({repeats} batches, ±1 s.e.)")
    variance_bars(
        {k: c["variance"] for k, c in curves.items()},
        ax=right,
        title=f"variance per episode ({repeats * max(counts):,} episodes, ±1 s.e.)",
        errors={k: c["variance_se"] for k, c in curves.items()},
    )
    fig.suptitle(title or f"{mdp.name}, γ = {mdp.gamma:g}")
    return fig


# ---------------------------------------------------------------------------------------------
# Learning curves, training diagnostics and the live plot every trainer can call back.

LEARNING_X = {"env_steps": "environment steps", "wall_time": "wall-clock time (s)"}
SEED_BANDS = {"minmax": "min–max over seeds", "std": "±1 std over seeds"}
BOOKKEEPING_KEYS = ("update", "env_steps", "wall_time")
DASHBOARD_KEYS = ("policy_objective", "value_loss", "entropy", "approx_kl")
_GRID_POINTS = 200


def moving_average(values, window: int) -> np.ndarray:
    """Trailing moving average ``m[i] = mean(values[i-k+1 : i+1])`` with ``k = min(i+1, window)``.

    ``values[E] -> m[E]``: the first ``window - 1`` points average over the episodes seen so far, so
    the curve starts at the first episode instead of ``window`` episodes later.
    """
    x = np.asarray(values, dtype=float)
    sums = np.concatenate([[0.0], np.cumsum(x)])
    ends = np.arange(1, len(x) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _episode_curve(history, x: str, smooth: int):
    """``(x[E], returns[E], smoothed[E])`` of a history's finished episodes, ordered by ``x``."""
    xs = history.column(x)
    order = np.argsort(xs, kind="stable")
    returns = history.column("return")[order]
    return xs[order], returns, moving_average(returns, smooth)


def _last_per_x(xs, ys):
    """Keep the last ``y`` of each run of equal ``x`` (episodes logged at the same step), so
    ``np.interp`` gets strictly increasing ``x``."""
    keep = np.append(xs[1:] != xs[:-1], True)
    return xs[keep], ys[keep]


def _check_learning_args(runs, x, smooth, band):
    if x not in LEARNING_X:
        raise ValueError(f"x = {x!r} is not allowed: must be one of {', '.join(LEARNING_X)}")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth = {smooth!r} is not allowed: must be an integer >= 1")
    if band not in SEED_BANDS:
        raise ValueError(f"band = {band!r} is not allowed: must be one of {', '.join(SEED_BANDS)}")
    if not isinstance(runs, dict) or not runs:
        raise ValueError(
            f"runs = {runs!r} is not allowed: must be a non-empty dict mapping a label to a "
            "History or a list of Histories, e.g. {'ppo': result.history}"
        )


def _as_histories(label, run) -> list:
    histories = [run] if isinstance(run, History) else list(run)
    if not histories or not all(isinstance(h, History) for h in histories):
        raise ValueError(
            f"runs[{label!r}] = {run!r} is not allowed: must be a History or a non-empty list of "
            "Histories (one per seed)"
        )
    return histories


def _single_run(ax, label, history, x, smooth, color):
    xs, returns, smoothed = _episode_curve(history, x, smooth)
    if len(xs) == 0:
        ax.plot([], [], color=color, label=f"{label} (no episodes yet)")
        return
    ax.plot(xs, returns, ".", color=color, alpha=0.25, ms=3, label=f"_{label} episodes")
    ax.plot(xs, smoothed, color=color, lw=2, label=label)


def seed_grid_curves(histories, x: str, smooth: int):
    """Smoothed curves of several seeds interpolated onto a common grid: ``(grid[G], curves[S, G])``.

    The grid spans the ``x`` range every seed covers (no extrapolation); seeds without episodes are
    left out, and ``G = 0`` when the seeds share no range yet.
    """
    curves = []
    for history in histories:
        xs, _, smoothed = _episode_curve(history, x, smooth)
        if len(xs):
            curves.append(_last_per_x(xs, smoothed))
    if not curves:
        return np.empty(0), np.empty((0, 0))
    lo, hi = max(xs[0] for xs, _ in curves), min(xs[-1] for xs, _ in curves)
    grid = np.linspace(lo, hi, _GRID_POINTS) if lo <= hi else np.empty(0)
    return grid, np.array([np.interp(grid, xs, ys) for xs, ys in curves])


def _seed_runs(ax, label, histories, x, smooth, color, band):
    for history in histories:
        xs, _, smoothed = _episode_curve(history, x, smooth)
        ax.plot(xs, smoothed, color=color, alpha=0.3, lw=0.8, label=f"_{label} seed")
    grid, curves = seed_grid_curves(histories, x, smooth)
    if len(curves) == 0:
        ax.plot([], [], color=color, label=f"{label} (no episodes yet)")
        return
    mean = curves.mean(axis=0)
    if band == "std":
        low, high = mean - curves.std(axis=0), mean + curves.std(axis=0)
    else:
        low, high = curves.min(axis=0), curves.max(axis=0)
    note = "" if len(grid) else " (no common x range yet)"
    ax.plot(grid, mean, color=color, lw=2, label=f"{label}: mean of {len(curves)} seeds{note}")
    ax.fill_between(grid, low, high, color=color, alpha=0.2, label=f"{label}: {SEED_BANDS[band]}")


def learning_curves(
    runs: dict,
    x: str = "env_steps",
    smooth: int = 20,
    ax=None,
    title: str = "learning curves",
    band: str = "minmax",
):
    """Return of finished episodes against ``x`` (``"env_steps"`` or ``"wall_time"``), one colour
    per entry of ``runs``.

    ``runs`` maps a label to a History (faint points: raw episode returns; line: their trailing
    moving average over ``smooth`` episodes, see :func:`moving_average`) or to a list of Histories,
    one per seed: faint per-seed smoothed lines, their mean on a common grid
    (:func:`seed_grid_curves`, linear interpolation) and a band, ``"minmax"`` or ``"std"`` (±1
    standard deviation over seeds), named in the legend. Histories without episodes yet are listed
    in the legend as such.
    """
    _check_learning_args(runs, x, smooth, band)
    fig, ax = _axis(ax, width=6.0, height=4.0)
    for color, (label, run) in zip(cycle(Palette), runs.items()):
        histories = _as_histories(label, run)
        if isinstance(run, History):
            _single_run(ax, label, run, x, smooth, color)
        else:
            _seed_runs(ax, label, histories, x, smooth, color, band)
    ax.set_xlabel(LEARNING_X[x])
    ax.set_ylabel(f"episode return (moving average of {smooth})")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return fig


def seed_summary(runs: dict, last: int = 20) -> Table:
    """The end of each run in numbers, one row per entry of ``runs`` (label → list of Histories,
    one per seed): the mean return of each seed's last ``last`` episodes, their mean and range over
    seeds, and the policy entropy of the last update (mean over seeds; ln 2 ≈ 0.69 is uniform over
    two actions, 0 is deterministic)."""
    rows = []
    for label, run in runs.items():
        histories = _as_histories(label, run)
        finals = np.array([h.recent_mean_return(last) for h in histories])
        entropy = np.mean([h.column("entropy", "updates")[-1] for h in histories])
        per_seed = ", ".join(f"{f:.0f}" for f in finals)
        rows.append(
            (label, per_seed, finals.mean(), f"{finals.min():.0f}–{finals.max():.0f}", entropy)
        )
    headers = [f"last-{last} mean return per seed", "mean", "range", "entropy at the end"]
    return Table(rows, ["", *headers], digits=3)


def diagnostic_keys(history) -> list[str]:
    """Every numeric field of the update rows, in first-seen order, except update/env_steps/
    wall_time (booleans and strings are left out)."""
    keys = {}
    for row in history.updates:
        for key, value in row.items():
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if numeric and key not in BOOKKEEPING_KEYS:
                keys.setdefault(key, None)
    return list(keys)


def _grid_axes(container, n: int, ncols: int = 3):
    """``n`` axes in rows of ``ncols`` inside a Figure or SubFigure; spare cells are hidden."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    axes = container.subplots(nrows, ncols, squeeze=False).ravel()
    for spare in axes[n:]:
        spare.set_visible(False)
    return axes[:n]


def _check_keys(history, keys):
    missing = [k for k in keys if k not in diagnostic_keys(history)]
    if missing:
        raise ValueError(
            f"keys = {list(keys)!r} is not allowed: {', '.join(missing)} not among the numeric "
            f"update fields of this history ({', '.join(diagnostic_keys(history)) or 'none yet'})"
        )


def diagnostics(history, keys=None, axes=None):
    """Small multiples: each update-row field in ``keys`` against env steps, one panel per key.

    ``keys`` defaults to :func:`diagnostic_keys` (e.g. policy_objective, value_loss, entropy, approx_kl,
    clip_fraction, explained_variance). ``axes``: a sequence of at least ``len(keys)`` axes to draw
    into (default: a new figure, three panels per row). A history without updates gives one panel
    saying so.
    """
    keys = diagnostic_keys(history) if keys is None else list(keys)
    _check_keys(history, keys)
    if axes is not None and len(axes) < len(keys):
        raise ValueError(f"axes holds {len(axes)} axes: {len(keys)} are needed, one per key")
    if axes is None:
        panels = max(len(keys), 1)
        ncols = min(3, panels)
        fig = Figure(figsize=(3.4 * ncols, 2.6 * -(-panels // ncols)), layout="constrained")
        axes = _grid_axes(fig, panels, ncols)
    fig = axes[0].get_figure(root=True)
    if not keys:
        axes[0].text(0.5, 0.5, "no updates yet", ha="center", va="center")
        axes[0].set_axis_off()
        return fig
    steps = history.column("env_steps", "updates")
    for color, key, ax in zip(cycle(Palette), keys, axes):
        ax.plot(steps, history.column(key, "updates"), color=color, lw=1.2)
        ax.set_title(key, fontsize="medium")
        ax.set_xlabel(LEARNING_X["env_steps"], fontsize="small")
        ax.tick_params(labelsize="small")
    return fig


def run_summary(history) -> str:
    """One line: env steps, finished episodes, mean return of the last 20, seconds."""
    steps = history.updates[-1]["env_steps"] if history.updates else 0
    mean = history.recent_mean_return()
    seconds = history.updates[-1]["wall_time"] if history.updates else 0.0
    last = f"last-20 mean return {mean:.1f}" if history.episodes else "no episode finished yet"
    return f"{steps:,} env steps · {len(history.episodes)} episodes · {last} · {seconds:.0f} s"


def learning_dashboard(history, title: str = ""):
    """Learning curve (left) beside up to four key diagnostics (right), titled with
    :func:`run_summary`; the figure :class:`LivePlot` redraws.

    The diagnostics shown are those of ``DASHBOARD_KEYS`` the history has, else its first four
    numeric update fields.
    """
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(1.1, 1.0))
    learning_curves({"return": history}, ax=left.subplots(), title="learning curve")
    present = diagnostic_keys(history)
    keys = [k for k in DASHBOARD_KEYS if k in present] or present[:4]
    diagnostics(history, keys, axes=_grid_axes(right, max(len(keys), 1), ncols=2))
    fig.suptitle(f"{title} — {run_summary(history)}" if title else run_summary(history))
    return fig


def in_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a ``kernel``), where figures can be
    displayed; False in plain Python, pytest or a terminal IPython."""
    shell = IPython.get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LivePlot:
    """A trainer callback that keeps a :func:`learning_dashboard` of the run up to date (or the
    figure of another ``draw(history, title=...)``, e.g. :func:`distributed_dashboard`).

    ``live = LivePlot(title="PPO", min_interval=0.5)``; ``train_ppo(callback=live)`` calls
    ``live(history)`` after every update, and ``live.close(history)`` draws the final state.
    Drawing happens in the calling (main) thread and updates one IPython display handle
    (``display(fig, display_id=True)``, then ``handle.update(fig)``), so ``%matplotlib inline`` is
    enough. Outside a kernel nothing is displayed; the figures are still drawn and counted.

    Inside a widget pass ``output``, an ``ipywidgets.Output``: each redraw then replaces its content
    by setting its ``outputs``. A display handle does not work there: JupyterLab's Output widget
    drops display updates (only the first figure would show), and drawing under ``with output:``
    would let that block swallow a kernel interrupt that lands while the figure is rendered.

    Throttling keeps training fast: a call redraws only when ``min_interval`` seconds have passed
    since the last redraw *and* the time since then is at least ``last_cost / max_share`` (so at
    most a ``max_share`` fraction of wall time goes to drawing). Measured cost of one redraw of a
    dashboard with 200 updates and 2,000 episodes, on one core of a shared server CPU: about
    0.4 s in a kernel (building the figure, ~25 ms, plus rendering it to PNG for the display,
    which dominates), ~25 ms headless. So with the defaults a kernel redraws about every 4 s and
    drawing takes at most 10% of the run.

    ``redraws`` counts the redraws, ``figure`` is the last figure (None before the first),
    ``drawing_seconds`` the total time spent drawing.
    """

    def __init__(
        self,
        title: str = "",
        min_interval: float = 0.5,
        max_share: float = 0.1,
        draw=None,
        output=None,
    ):
        if not min_interval >= 0:
            raise ValueError(f"min_interval = {min_interval!r} is not allowed: must be >= 0")
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share = {max_share!r} is not allowed: must be in (0, 1]")
        self.title = title
        self.draw = draw or learning_dashboard  # draw(history, title=...) -> Figure
        self.min_interval = min_interval
        self.max_share = max_share
        self.output = output  # an ipywidgets.Output to draw into, or None: a display handle
        self.redraws = 0
        self.figure = None
        self.drawing_seconds = 0.0
        self._handle = None
        self._last_start = -math.inf
        self._last_cost = 0.0

    def __call__(self, history) -> None:
        """Redraw from ``history`` if the throttle allows it (see the class docstring)."""
        waited = time.perf_counter() - self._last_start
        if waited >= max(self.min_interval, self._last_cost / self.max_share):
            self.redraw(history)

    def close(self, history) -> None:
        """Draw the final state of ``history``, whatever the throttle says."""
        self.redraw(history)

    def redraw(self, history) -> None:
        """Draw the dashboard now and show it in place of the previous one (in a kernel)."""
        self._last_start = time.perf_counter()
        self.figure = self.draw(history, title=self.title)
        if in_kernel():
            self._show(self.figure)
        self._last_cost = time.perf_counter() - self._last_start
        self.drawing_seconds += self._last_cost
        self.redraws += 1

    def _show(self, fig) -> None:
        if self.output is not None:
            self.output.outputs = (display_data(fig),)
        elif self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def display_data(obj) -> dict:
    """The ``display_data`` output (nbformat) the kernel would send for ``display(obj)``: its
    representations from IPython's formatters (e.g. ``image/png`` for a Figure under
    ``%matplotlib inline``), binary ones base64-encoded as in a notebook file."""
    data, metadata = IPython.get_ipython().display_formatter.format(obj)
    data = {
        mime: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        for mime, value in data.items()
    }
    return {"output_type": "display_data", "data": data, "metadata": metadata}


# ---------------------------------------------------------------------------------------------
# Notebook 03: bias and variance of advantage estimators; notebook 04: the clipped objective.


def bias_variance(stats: list, xs, xlabel: str, ax=None, title: str = ""):
    """Bias², variance and their sum (the mean squared error) of estimators indexed by ``xs``.

    ``stats[i]`` is a dict with ``bias2`` and ``variance`` (as returned per estimator by
    ``tabular.advantage_estimator_errors``) for the estimator with parameter ``xs[i]`` (λ or n).
    The log axis starts at ``1e-4`` times the largest error: a bias² below that (an exact critic,
    or λ = 1) is drawn on the axis' floor as an open marker, not at an arbitrarily small value.
    """
    fig, ax = _axis(ax)
    bias2 = np.array([s["bias2"] for s in stats])
    variance = np.array([s["variance"] for s in stats])
    floor = 1e-4 * (bias2 + variance).max()
    ax.plot(xs, np.maximum(bias2, floor), "o-", color=Palette[3], label="bias²")
    below = bias2 < floor
    ax.plot(np.asarray(xs)[below], np.full(below.sum(), floor), "o", color="white", ms=4)
    ax.plot(xs, variance, "s-", color=Palette[0], label="variance")
    ax.plot(xs, bias2 + variance, "k--", lw=1.5, label="mean squared error")
    best = int(np.argmin(bias2 + variance))
    ax.axvline(xs[best], color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.minorticks_off()  # a quarter of the drawing time otherwise, for widgets that redraw
    ax.set_ylim(bottom=floor / 1.5)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def advantage_tradeoff(mdp, theta, critic, lambdas, nsteps, title: str = ""):
    """Exact bias², variance and MSE of GAE(λ) against λ (left) and of n-step targets against n
    (right, log axis) for the critic ``critic[S]`` (``tabular.exact_estimator_errors``, notebook 03,
    eq. 3.3); the widget of ``widgets.critic_error_explorer`` redraws it."""
    from rlteach import tabular

    estimators = {("gae", lam): ("gae", lam) for lam in lambdas}
    estimators |= {("nstep", n): ("nstep", n) for n in nsteps}
    errors = tabular.exact_estimator_errors(mdp, theta, critic, estimators)
    fig, (left, right) = figure(ncols=2, width=4.6)
    bias_variance([errors["gae", lam] for lam in lambdas], lambdas, "λ", ax=left, title="GAE(λ)")
    bias_variance([errors["nstep", n] for n in nsteps], nsteps, "n", ax=right, title="n-step")
    right.set_xscale("log")
    right.set_xticks(nsteps, [str(n) for n in nsteps])
    right.minorticks_off()
    if title:
        fig.suptitle(title)
    return fig


def critic_error_kinds(mdp, theta, size: float, lambdas, seed: int = 0):
    """One GAE(λ) bias/variance panel (exact, as :func:`advantage_tradeoff`) per kind of critic
    error in ``tabular.CRITIC_ERRORS``, each with root-mean-square error ``size`` over states."""
    from rlteach import tabular

    kinds = tabular.CRITIC_ERRORS
    fig, axes = figure(ncols=len(kinds), width=3.4, height=3.2)
    for kind, ax in zip(kinds, axes, strict=True):
        critic = tabular.critic_with_error(mdp, theta, kind, size, seed)
        errors = tabular.exact_estimator_errors(
            mdp, theta, critic, {lam: ("gae", lam) for lam in lambdas}
        )
        bias_variance([errors[lam] for lam in lambdas], lambdas, "λ", ax=ax, title=kind)
    fig.suptitle(f"GAE(λ) with a critic off by {size:g} (root mean square over states)")
    return fig


def truncation_table(batch, gamma: float, rows: int = 6) -> Table:
    """The one-step targets at the first ``rows`` time-limit cuts of a collected ``batch``,
    bootstrapped and conflated with a termination (``advantages.truncation_targets``, notebook 03,
    section 3)."""
    from rlteach import advantages

    return Table(
        advantages.truncation_targets(batch, gamma, rows),
        ["step t", "env", "V(s_t+1)", "target, bootstrapped", "target, conflated"],
        digits=3,
    )


def clip_objective(clip_eps: float = 0.2, ax=None):
    """One sample's ``min(r·A, clip(r, 1−ε, 1+ε)·A)`` against the ratio ``r``, for ``A = +1`` and
    ``A = −1`` (notebook 04, eq. 4.3), computed with ``losses.ppo_clip_objective``; shaded where its
    gradient with respect to ``r`` is zero (autograd), i.e. where the sample stops pushing."""
    import torch

    from rlteach import losses

    fig, axes = figure(ncols=2, width=4.4) if ax is None else (ax[0].figure, ax)
    ratios = np.linspace(0.01, 2.0, 400)
    logp = torch.tensor(np.log(ratios), requires_grad=True)
    zeros = torch.zeros_like(logp)
    for panel, adv in zip(axes, (1.0, -1.0), strict=True):
        advs = torch.full_like(logp, adv)
        # each sample's slope, divided by the batch size: zero where the mean does not depend on it
        (slopes,) = torch.autograd.grad(
            losses.ppo_clip_objective(logp, zeros, advs, clip_eps), logp
        )
        values = [
            losses.ppo_clip_objective(logp[i : i + 1], zeros[:1], advs[:1], clip_eps).item()
            for i in range(len(ratios))
        ]
        flat = slopes.abs().numpy() < 1e-12
        panel.plot(ratios, values, color=Palette[0], lw=2, label=r"$L^{CLIP}$ (one sample)")
        panel.plot(ratios, ratios * adv, color="grey", ls="--", lw=1, label=r"$r\,A$ (unclipped)")
        panel.fill_between(
            ratios,
            0,
            1,
            where=flat,
            transform=panel.get_xaxis_transform(),
            color=Palette[3],
            alpha=0.12,
            label="zero gradient",
        )
        for edge in (1 - clip_eps, 1 + clip_eps):
            panel.axvline(edge, color="black", lw=0.6, ls=":")
        panel.set_xlabel(r"ratio $r = \pi_\theta(a|s)\,/\,\pi_{old}(a|s)$")
        panel.set_title(f"A = {adv:+.0f}, ε = {clip_eps:g}")
        panel.legend(fontsize="small", loc="best")
    return fig


def source(obj):
    """The source code of a library function or class, syntax-highlighted in a notebook, so a
    student reads the real loop rather than a copy of it."""
    import inspect

    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def diagnostic_comparison(runs: dict, keys, title: str = ""):
    """One panel per update-row field in ``keys``, one line per run (``runs``: label → History),
    against env steps — e.g. the KL per update of PPO with and without clipping (notebook 04)."""
    fig, axes = figure(ncols=len(keys), width=4.2)
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys, strict=True):
        for color, (label, history) in zip(cycle(Palette), runs.items()):
            ax.plot(
                history.column("env_steps", "updates"),
                history.column(key, "updates"),
                color=color,
                lw=1.2,
                label=label,
            )
        ax.set_title(key)
        ax.set_xlabel("environment steps")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def surrogate_vs_true(
    curves: dict,
    slope: float,
    title: str = "",
    xlabel: str = r"step size $\alpha$ along the direction",
):
    """Notebook 04, section 1: the true improvement ``J(θ) − J(θ_old)`` and the surrogate
    ``L_old(θ)`` (eq. 4.2) against the step size ``α`` along a direction (``curves`` from
    ``tabular.improvement_along``), with their common tangent ``α · slope`` at ``α = 0`` (left);
    the gap ``L_old − (J − J_old)`` against the mean KL between ``π_θ`` and ``π_old`` (right)."""
    fig, (left, right) = figure(ncols=2, width=4.8)
    steps = curves["steps"]
    left.plot(
        steps, curves["true"], color=Palette[0], lw=2, label=r"true: $J(\theta)-J(\theta_{old})$"
    )
    left.plot(
        steps, curves["surrogate"], color=Palette[1], lw=2, label=r"surrogate $L_{old}(\theta)$"
    )
    tangent = steps * slope
    shown = tangent <= 1.2 * max(curves["surrogate"].max(), curves["true"].max())
    left.plot(steps[shown], tangent[shown], color="grey", ls=":", label="common tangent at α = 0")
    left.set_xlabel(xlabel)
    left.set_ylabel("improvement")
    left.legend(fontsize="small")
    moved = curves["kl"] > 0
    right.loglog(
        curves["kl"][moved], (curves["surrogate"] - curves["true"])[moved], color=Palette[3], lw=2
    )
    right.set_xlabel(r"mean KL($\pi_{old}\,\|\,\pi_\theta$) over $\bar d^{\pi_{old}}$")
    right.set_ylabel("surrogate − true")
    right.set_title("the gap grows with the distance between policies", fontsize="medium")
    fig.suptitle(title)
    return fig


def _update_grid(histories, key: str):
    """``(env_steps[G], values[S, G])``: one update-row field of several seeds on the env steps
    every seed reached (linear interpolation between updates)."""
    series = [(h.column("env_steps", "updates"), h.column(key, "updates")) for h in histories]
    hi = min(xs[-1] for xs, _ in series)
    lo = max(xs[0] for xs, _ in series)
    grid = np.linspace(lo, hi, _GRID_POINTS)
    return grid, np.array([np.interp(grid, xs, ys) for xs, ys in series])


def diagnostic_bands(runs: dict, keys, levels: dict | None = None, title: str = ""):
    """One panel per update-row field in ``keys`` against env steps; ``runs`` maps a label to a list
    of Histories (one per seed): their mean and the min–max band over seeds, one colour per label.
    ``levels`` (label → {key: value}) draws a dashed horizontal line in the label's colour, e.g.
    ε on the panel of ``max_ratio_dev`` (notebook 04). A label whose runs lack a field is left out
    of that panel."""
    levels = levels or {}
    fig, axes = figure(ncols=len(keys), width=3.9, height=3.2)
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys, strict=True):
        for color, (label, histories) in zip(cycle(Palette), runs.items()):
            histories = _as_histories(label, histories)
            grid, values = _update_grid(histories, key)
            if np.isnan(values).all():  # a field this run does not record, e.g. β without penalty
                continue
            ax.plot(
                grid, values.mean(0), color=color, lw=1.5, label=f"{label} ({len(values)} seeds)"
            )
            ax.fill_between(grid, values.min(0), values.max(0), color=color, alpha=0.2)
            if key in levels.get(label, {}):
                ax.axhline(levels[label][key], color=color, ls="--", lw=1)
        ax.set_title(key, fontsize="medium")
        ax.set_xlabel(LEARNING_X["env_steps"], fontsize="small")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{title} (lines: mean over seeds; bands: min–max)" if title else "")
    return fig


def mean_range(values, digits: int = 3) -> str:
    """``"mean [min, max]"`` of ``values`` with ``digits`` significant digits: a table cell."""
    return _center_and_range(np.mean, values, digits)


def _center_and_range(center, values, digits: int) -> str:
    values = np.asarray(values, dtype=float)
    low, mid, high = values.min(), center(values), values.max()
    return f"{mid:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def seed_table(runs: dict, keys, last: int = 50, digits: int = 3) -> Table:
    """One row per label of ``runs`` (label → list of Histories, one per seed): for each update
    field in ``keys`` its median over the updates of a run, then the mean return of the last
    ``last`` episodes; each cell is the mean over seeds with the [min, max] over seeds."""

    def cell(values):
        return mean_range(values, digits)

    rows = []
    for label, histories in runs.items():
        histories = _as_histories(label, histories)
        row = [label, str(len(histories))]
        row += [cell([np.median(h.column(k, "updates")) for h in histories]) for k in keys]
        row.append(cell([h.recent_mean_return(last) for h in histories]))
        rows.append(row)
    headers = ["run", "seeds", *(f"median {k}" for k in keys), f"return, last {last} episodes"]
    return Table(rows, headers)


def seed_metrics(runs: dict, metrics: dict, digits: int = 3) -> Table:
    """One row per label of ``runs`` (label → list of Histories, one per seed), one column per
    entry of ``metrics`` (name → ``f(history) -> float``): the mean over seeds with the [min, max]
    (:func:`mean_range`). A NaN (e.g. a level never reached) is left out of the mean and counted:
    the cell then says in how many seeds it was missing."""
    rows = []
    for label, histories in runs.items():
        histories = _as_histories(label, histories)
        row = [label, str(len(histories))]
        for metric in metrics.values():
            values = np.array([metric(h) for h in histories], dtype=float)
            found = values[~np.isnan(values)]
            cell = mean_range(found, digits) if len(found) else "—"
            missing = len(values) - len(found)
            row.append(cell + (f" (none in {missing} of {len(values)})" if missing else ""))
        rows.append(row)
    return Table(rows, ["run", "seeds", *metrics])


# ---------------------------------------------------------------------------------------------
# Notebook 05: staleness and scaling.


def staleness_histogram(staleness, ax=None, title: str = "staleness of the pushes"):
    """How many pushes arrived ``k`` versions late (``k = 0``: computed from the newest θ)."""
    fig, ax = _axis(ax)
    values = np.asarray(staleness, dtype=int)
    counts = np.bincount(values) if len(values) else np.zeros(1, dtype=int)
    ax.bar(np.arange(len(counts)), counts, color=Palette[1])
    ax.set_xlabel("staleness: versions the server had moved on since the pull")
    ax.set_ylabel("pushes")
    mean = values.mean() if len(values) else 0.0
    ax.set_title(f"{title} (mean {mean:.2f})")
    return fig


def _measured_points(ax, workers, values, color, label) -> np.ndarray:
    """Mean over repeats (rows of ``values [R, K]``, or one row ``[K]``) as dots, with the range
    (min to max) as error bars when there is more than one repeat; returns the mean ``[K]``."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    mean = values.mean(0)
    spread = (mean - values.min(0), values.max(0) - mean) if len(values) > 1 else None
    suffix = f", mean and range of {len(values)} repeats" if len(values) > 1 else ""
    ax.errorbar(
        workers,
        mean,
        yerr=spread,
        fmt="o",
        color=color,
        ms=7,
        capsize=4,
        label=f"{label} (measured{suffix})",
    )
    return mean


def _cores_line(ax, cores: int | None) -> None:
    if cores:
        ax.axvline(cores, color="grey", ls="--", lw=1, label=f"os.cpu_count() = {cores} cores")


def scaling(
    workers,
    rates: dict,
    serial_fractions: dict | None = None,
    ax=None,
    title: str = "samples per second vs workers",
    cores: int | None = None,
):
    """Measured throughput against the number of workers, one line per setting (``rates``: label →
    samples/s per entry of ``workers``, ``[K]``, or per repeat ``[R, K]``: mean and range shown),
    with the ideal linear speed-up, a dashed line at ``cores`` when given and, when
    ``serial_fractions`` (label → s) are given, Amdahl's curve ``r₁ / (s + (1 − s)/W)``."""
    from rlteach.distributed.patterns import amdahl_speedup

    fig, ax = _axis(ax, width=8.0, height=5.0)
    w = np.asarray(workers, dtype=float)
    dense = np.linspace(1, w.max(), 100)
    for color, (label, rate) in zip(cycle(Palette), rates.items()):
        rate = _measured_points(ax, w, rate, color, label)
        ax.plot(dense, rate[0] * dense, ":", color=color, lw=1, label=f"{label}: linear speed-up")
        if serial_fractions and label in serial_fractions:
            s = serial_fractions[label]
            ax.plot(
                dense,
                rate[0] * amdahl_speedup(s, dense),
                "-",
                color=color,
                label=f"{label}: Amdahl, serial fraction {s:.2f}",
            )
    _cores_line(ax, cores)
    ax.set_xticks(w)
    ax.set_xlabel("workers W")
    ax.set_ylabel("samples per second")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2)
    return fig


def worker_scaling(
    tables: dict, laws: dict | None = None, cores: int | None = None, target: float = 475
):
    """Time and samples to a return against the number of workers, one colour per setting.

    ``tables``: label → a :func:`~rlteach.distributed.driver.worker_scaling` table (``workers``,
    ``seconds`` and ``env_steps`` ``[seeds, K]``, NaN where a run never reached ``target``).
    Left: seconds to ``target``, median over seeds with the range; ``laws`` (label → predicted
    seconds ``[K]``, e.g. :func:`~rlteach.distributed.driver.simulator_law`) drawn as lines.
    Right: env steps to ``target``, with the 1-worker median as a dotted line (what a fixed global
    batch predicts for every W). Runs that never reached ``target`` are left out and counted in the
    legend."""
    fig, (left, right) = figure(ncols=2, width=5.0, height=3.8)
    for i, (color, (label, table)) in enumerate(zip(cycle(Palette), tables.items())):
        w = np.asarray(table["workers"], dtype=float)
        dodged = w * 2 ** (0.05 * (i - (len(tables) - 1) / 2))  # settings side by side at each W
        missing = int(np.isnan(table["seconds"]).sum())
        note = f"; {missing} of the runs never reached it" if missing else ""
        _median_and_range(left, dodged, table["seconds"], color, f"{label}{note}")
        if laws and label in laws:
            left.plot(w, laws[label], "-", color=color, lw=1.2, label=f"{label}: predicted")
        steps = _median_and_range(right, dodged, table["env_steps"], color, label)
        right.axhline(steps[0], color=color, ls=":", lw=1)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(w, [str(int(x)) for x in w])
        ax.set_xlabel("workers W")
        _cores_line(ax, cores)
    left.set_yscale("log")
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.yaxis.set_minor_formatter(ScalarFormatter())
    left.set_ylabel(f"seconds to a last-20 mean of {target:g}")
    left.set_title("wall-clock time (log scale)")
    right.set_ylabel(f"env steps to {target:g}")
    right.set_ylim(bottom=0)
    right.set_title("samples (dotted: the 1-worker median)")
    fig.legend(
        *left.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small"
    )
    return fig


def worker_scaling_table(tables: dict, laws: dict | None = None, digits: int = 3) -> Table:
    """One row per setting and W of :func:`worker_scaling`'s ``tables``: seconds and env steps to
    the target as ``median [min, max]`` over the seeds that reached it (and how many did), the
    speed-up ``t(1)/t(W)`` of the medians, and the law's prediction when ``laws`` has one."""
    rows = []
    for label, table in tables.items():
        seconds, steps = np.asarray(table["seconds"]), np.asarray(table["env_steps"])
        reached = ~np.isnan(seconds)
        one = np.median(seconds[reached[:, 0], 0]) if reached[:, 0].any() else math.nan
        for j, w in enumerate(table["workers"]):
            ok = reached[:, j]
            if not ok.any():
                rows.append([label, w, f"0 of {len(ok)}", "never", "never", "n/a", "n/a"])
                continue
            predicted = f"{laws[label][j]:.{digits}g}" if laws and label in laws else "n/a"
            rows.append(
                [
                    label,
                    w,
                    f"{ok.sum()} of {len(ok)}",
                    median_range(seconds[ok, j], digits),
                    median_range(steps[ok, j], digits),
                    f"{one / np.median(seconds[ok, j]):.2f}×",
                    predicted,
                ]
            )
    return Table(
        rows,
        [
            "setting",
            "W",
            "seeds that reached it",
            "seconds",
            "env steps",
            "speed-up t(1)/t(W)",
            "predicted seconds",
        ],
    )


def median_range(values, digits: int = 3) -> str:
    """``"median [min, max]"`` of ``values`` with ``digits`` significant digits: a table cell."""
    return _center_and_range(np.median, values, digits)


def _median_and_range(ax, workers, values, color, label) -> np.ndarray:
    """Median over the seeds (rows of ``values [S, K]``, NaN ignored) as dots with the range as
    error bars; returns the medians ``[K]``."""
    values = np.asarray(values, dtype=float)
    with warnings.catch_warnings():  # a W where no seed reached the target: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        median, low, high = np.nanmedian(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)
    ax.errorbar(
        workers,
        median,
        yerr=(median - low, high - median),
        fmt="o",
        color=color,
        ms=6,
        capsize=4,
        label=f"{label} (median and range of {len(values)} seeds)",
    )
    return median


def scaling_law(result, ax=None, title: str = "", cores: int | None = None):
    """One :class:`~rlteach.distributed.patterns.Scaling` measurement against its law: the speed-up
    ``S(W)`` (mean and range over the repeats), the ideal ``S = W``, and the law — Amdahl (5.2) for
    fixed work, Gustafson (5.3) for growing work — with the serial fraction measured directly
    (serial time / time of the 1-worker run) and the one fitted to the speed-ups (mean of the
    repeats' fits; needs two worker counts). Fixed work also gets a samples-per-second axis."""
    fig, ax = _axis(ax, width=5.0)
    w = result.workers.astype(float)
    dense = np.linspace(1, w.max(), 100)
    _measured_points(ax, w, result.speedups, Palette[0], "speed-up")
    ax.plot(dense, dense, ":", color="grey", lw=1, label="linear: S = W")
    law = result.workload.law
    fractions = [("measured", result.measured_serial_fraction.mean(), "--", Palette[2])]
    if len(w) > 1:
        fractions.append(("fitted", result.fitted_serial_fraction.mean(), "-", Palette[1]))
    for name, s, style, color in fractions:
        label = f"{law}, {name} s = {s:.2f}"
        ax.plot(dense, result.predicted_speedup(s, dense), style, color=color, label=label)
    if result.workload.work == "fixed":  # the same samples at every W: rate = rate(1) · S
        rate1 = result.rates[:, 0].mean()
        ax.secondary_yaxis(
            "right", functions=(lambda s: s * rate1, lambda r: r / rate1)
        ).set_ylabel("samples per second")
    _cores_line(ax, cores)
    ax.set_xticks(w)
    ax.set_xlabel("workers W")
    ax.set_ylabel("speed-up S(W)")
    ax.set_title(title or f"{result.workload.work} work: {law}")
    ax.legend(fontsize="small")
    return fig


def scaling_table(results: dict, digits: int = 3) -> Table:
    """One row per label → :class:`~rlteach.distributed.patterns.Scaling` of ``results``: its law,
    the speed-up at each worker count above 1, the serial fraction fitted with the law and the one
    measured directly; each cell the mean [min, max] over the repeats."""
    first = next(iter(results.values()))
    rows = [
        [
            label,
            result.workload.law,
            *(mean_range(column, digits) for column in result.speedups.T[1:]),
            mean_range(result.fitted_serial_fraction, digits),
            mean_range(result.measured_serial_fraction, digits),
        ]
        for label, result in results.items()
    ]
    headers = [
        "experiment",
        "law",
        *(f"S(W={w})" for w in first.workers[1:]),
        "s fitted",
        "s measured",
    ]
    return Table(rows, headers)


def scaling_laws(results: dict, cores: int | None = None):
    """:func:`scaling_law` side by side for each label → ``Scaling`` of ``results``."""
    fig, axes = figure(ncols=len(results), width=5.0)
    for ax, (label, result) in zip(np.atleast_1d(axes), results.items(), strict=True):
        scaling_law(result, ax=ax, title=label, cores=cores)
    return fig


def traffic(measured: dict, params: int, ax=None, title: str = ""):
    """Megabytes per update at the busiest process against the number of workers: measured
    points (``measured``: scheme → list of :func:`~rlteach.distributed.traffic.measure_traffic`
    results, with ``"workers"`` added) on the arithmetic of
    :func:`~rlteach.distributed.traffic.traffic_per_update` (lines)."""
    from rlteach.distributed.traffic import traffic_per_update

    fig, ax = _axis(ax, width=6.0)
    for color, (scheme, runs) in zip(cycle(Palette), measured.items()):
        workers = [run["workers"] for run in runs]
        dense = np.arange(2, max(workers) + 1)
        busiest = [traffic_per_update(scheme, w, params)["busiest"] / 1e6 for w in dense]
        ax.plot(dense, busiest, "-", color=color, label=f"{scheme}: arithmetic")
        ax.plot(
            workers,
            [run["busiest"] / 1e6 for run in runs],
            "o",
            color=color,
            ms=8,
            label=f"{scheme}: measured (sockets)",
        )
    ax.set_xticks(dense)
    ax.set_xlabel("workers W")
    ax.set_ylabel("MB per update at the busiest process")
    ax.set_title(title or f"sent + received per update, P = {params:,} float32")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    return fig


def _cluster_sizes(workers):
    """The W axis of the link plots: ``workers`` or 2…1000, spaced evenly on a log scale."""
    if workers is None:
        return np.unique(np.geomspace(2, 1000, 80).astype(int))
    return np.asarray(workers, dtype=int)


def _mark_workers(ax, at) -> None:
    if at is not None:
        ax.axvline(at, color="0.4", lw=1, ls="-.", label=f"W = {at}")


def update_bytes(params: int, workers=None, at: int | None = None, ax=None, title: str = ""):
    """Megabytes per update at the busiest process against W (log–log), by the arithmetic of
    :func:`~rlteach.distributed.traffic.traffic_per_update` (eqs. 8.1–8.2), for a model of
    ``params`` float32 values; ``at`` marks one W."""
    from rlteach.distributed.traffic import SCHEMES, traffic_per_update

    fig, ax = _axis(ax, width=6.0)
    w = _cluster_sizes(workers)
    for color, scheme in zip(Palette, SCHEMES, strict=False):
        busiest = [traffic_per_update(scheme, int(n), params)["busiest"] / 1e6 for n in w]
        ax.plot(w, busiest, "-", color=color, label=scheme)
    _mark_workers(ax, at)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("workers W")
    ax.set_ylabel("MB per update at the busiest process")
    ax.set_title(title or f"sent + received per update, P = {params:,}")
    ax.legend(fontsize="small")
    return fig


def update_seconds(
    params: dict,
    alpha: float,
    beta: float,
    duplex: bool = True,
    workers=None,
    at: int | None = None,
    ax=None,
    title: str = "",
):
    """Seconds per update at the busiest link against W (log–log) in the α–β model of
    :func:`~rlteach.distributed.traffic.link_seconds` (eqs. 8.4 and 8.6): for each model size
    (``params``: label → P) the ring all-reduce (solid) and the synchronous parameter server
    (dashed), and once the ring's latency term ``2(W − 1)α`` alone (black, dotted: the same for
    every P). ``at`` marks one W."""
    from rlteach.distributed.traffic import link_seconds

    fig, ax = _axis(ax, width=6.0)
    w = _cluster_sizes(workers)
    for color, (label, size) in zip(cycle(Palette), params.items()):
        for scheme, style in (("all-reduce", "-"), ("parameter server", "--")):
            times = [link_seconds(scheme, int(n), size, alpha, beta, duplex)["seconds"] for n in w]
            ax.plot(w, times, style, color=color, label=f"{label}: {scheme}")
    latency = [link_seconds("all-reduce", int(n), 1, alpha, beta)["latency"] for n in w]
    ax.plot(w, latency, ":", color="black", lw=2, label="ring latency term 2(W−1)α")
    _mark_workers(ax, at)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("workers W")
    ax.set_ylabel("seconds per update at the busiest link")
    link = "full duplex" if duplex else "half duplex"
    ax.set_title(title or f"α = {alpha * 1e6:g} µs, β = {beta / 1e9:g} GB/s, {link}")
    ax.legend(fontsize="small")
    return fig


def _readable(value: float) -> str:
    """Three significant digits without exponents: 0.233, 14.4, 2,000, 160,000."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def link_table(params: dict, workers=(10, 100, 1000), duplex: bool = True) -> Table:
    """Bytes and seconds per update at the busiest process for each model size (``params``: label
    → P) and each W, by :func:`~rlteach.distributed.traffic.link_table` (eqs. 8.1–8.2 and the α–β
    model's 8.4 and 8.6 at its default α and β), with the latency's share of the ring's time."""
    from rlteach.distributed.traffic import link_table as rows_for

    rows = [
        [
            label,
            f"{size:,}",
            row["W"],
            *(_readable(row[k]) for k in ("server MB", "ring MB per rank", "server ms", "ring ms")),
            f"{row['ring: latency share']:.1%}",
        ]
        for label, size in params.items()
        for row in rows_for(size, workers, duplex=duplex)
    ]
    headers = ["model", "P", "W", "server MB", "ring MB per rank", "server ms", "ring ms"]
    return Table(rows, [*headers, "ring: latency share"])


# ---------------------------------------------------------------------------------------------
# Notebooks 06–07: distributed runs (DA3C, DPPO).


def worker_curves(history, ax=None, x: str = "env_steps", smooth: int = 20, title: str = ""):
    """One smoothed return curve per worker (faint raw points behind it) plus the greedy return
    of the global policy, evaluated during the run (black). ``x``: ``env_steps`` (over all
    workers) or ``wall_time``."""
    fig, ax = _axis(ax)
    workers = sorted({row["worker"] for row in history.episodes if "worker" in row})
    for color, worker in zip(cycle(Palette), workers):
        rows = [r for r in history.episodes if r.get("worker") == worker]
        xs = np.array([r[x] for r in rows], dtype=float)
        returns = np.array([r["return"] for r in rows], dtype=float)
        ax.plot(xs, returns, ".", color=color, alpha=0.2, ms=2)
        ax.plot(xs, moving_average(returns, smooth), color=color, lw=1.5, label=f"worker {worker}")
    if history.evaluations:
        ax.plot(
            history.column(x, "evaluations"),
            history.column("return", "evaluations"),
            "k-o",
            ms=4,
            lw=2,
            label="global policy (greedy)",
        )
    ax.set_xlabel(LEARNING_X[x])
    ax.set_ylabel("episode return")
    ax.set_title(title or "per-worker training returns and the global policy")
    _legend_if_labelled(ax)
    return fig


def server_activity(history, ax=None):
    """The parameter server's version against wall-clock time: its slope is the update rate."""
    fig, ax = _axis(ax)
    for color, worker in zip(cycle(Palette), sorted({r["worker"] for r in history.updates})):
        rows = [r for r in history.updates if r["worker"] == worker]
        ax.plot(
            [r["wall_time"] for r in rows],
            [r["version"] for r in rows],
            ".",
            ms=3,
            color=color,
            label=f"pushes of worker {worker}",
        )
    seconds = history.meta.get("seconds") or (
        history.updates[-1]["wall_time"] if history.updates else 0
    )
    versions = history.meta.get("versions", max((r["version"] for r in history.updates), default=0))
    rate = versions / seconds if seconds else 0.0
    ax.set_xlabel("wall-clock time (s)")
    ax.set_ylabel("server version")
    ax.set_title(f"server updates: {rate:.0f} per second")
    _legend_if_labelled(ax)
    return fig


def time_split(history, ax=None):
    """Where each worker's time went, as a share of its total (stacked bars): ``compute``, its own
    work; ``communication``, moving parameters or gradients (a pull from the parameter server, or
    DD-PPO's all-reduce); ``wait``, idle until the others are ready (the server's answer to a push,
    or the slowest rank at an all-reduce)."""
    fig, ax = _axis(ax)
    workers = sorted({r["worker"] for r in history.updates})
    parts = ("compute", "communication", "wait")
    totals = np.array(
        [
            [sum(r.get(p, 0.0) for r in history.updates if r["worker"] == w) for p in parts]
            for w in workers
        ]
    )
    shares = totals / np.maximum(totals.sum(1, keepdims=True), 1e-12)
    bottom = np.zeros(len(workers))
    for color, part, share in zip(Palette, parts, shares.T, strict=False):
        ax.bar([f"worker {w}" for w in workers], share, bottom=bottom, color=color, label=part)
        bottom += share
    ax.set_ylabel("share of the worker's time")
    ax.set_title("compute / communication / wait")
    _legend_if_labelled(ax)
    return fig


def distributed_dashboard(history, title: str = ""):
    """The live figure of a DA3C or DPPO run: per-worker and global returns (left), server
    updates and the staleness of pushes (right)."""
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=(1.3, 1.0))
    worker_curves(history, ax=left.subplots())
    top, bottom = right.subplots(2, 1)
    if history.updates:
        server_activity(history, ax=top)
        staleness_histogram(
            [r["staleness"] for r in history.updates], ax=bottom, title="staleness of the pushes"
        )
    summary = run_summary(history)
    fig.suptitle(f"{title} — {summary}" if title else summary)
    return fig


# ---------------------------------------------------------------------------------------------
# Notebook 06: on-policy data and staleness.


def staleness_outcomes(sweep: dict, last: int = 50) -> dict:
    """Per injected staleness ``k`` of ``sweep`` (k → list of Histories, one per seed) the pair
    ``(returns[S], kls[S])``: each seed's mean return over its last ``last`` episodes and its mean
    ``kl_stale`` = KL(π_{θ_t} ‖ π_{θ_{t−k}}) over its updates (0 at k = 0, where θ_{t−k} is θ_t and
    the worker does not measure it)."""
    outcomes = {}
    for k in sorted(sweep):
        histories = _as_histories(k, sweep[k])
        returns = np.array([h.recent_mean_return(last) for h in histories])
        kls = np.array([np.mean(h.column("kl_stale", "updates")) if k else 0.0 for h in histories])
        outcomes[k] = (returns, kls)
    return outcomes


def staleness_sweep(runs: dict, last: int = 50, title: str = ""):
    """Return (left) and ``KL(π_{θ_t} ‖ π_{θ_{t−k}})`` (right) against the injected staleness k.

    ``runs`` maps a label (e.g. "stale gradient") to a sweep, k → list of Histories (one per seed),
    summarised by :func:`staleness_outcomes`: dots are seeds, the line joins their means and the
    bars span min–max over seeds. The k are placed on evenly spaced ticks."""
    ks = sorted({k for sweep in runs.values() for k in sweep})
    position = {k: i for i, k in enumerate(ks)}
    fig, (left, right) = figure(ncols=2, width=4.6, height=3.4)
    for i, (color, (label, sweep)) in enumerate(zip(cycle(Palette), runs.items())):
        outcomes = staleness_outcomes(sweep, last)
        shift = 0.08 * (i - (len(runs) - 1) / 2)  # labels side by side at each k
        xs = np.array([position[k] for k in outcomes]) + shift
        for ax, part in ((left, 0), (right, 1)):
            values = [outcomes[k][part] for k in outcomes]
            means = np.array([v.mean() for v in values])
            lows, highs = np.array([v.min() for v in values]), np.array([v.max() for v in values])
            for x, v in zip(xs, values, strict=True):
                ax.plot(np.full(len(v), x), v, ".", color=color, alpha=0.5, ms=5)
            seeds = max(len(v) for v in values)
            ax.errorbar(
                xs,
                means,
                yerr=(means - lows, highs - means),
                color=color,
                marker="o",
                capsize=3,
                label=f"{label} (mean, min–max of {seeds} seeds)",
            )
    for ax, ylabel in (
        (left, f"return, last {last} episodes"),
        (right, r"mean $\mathrm{KL}(\pi_{\theta_t} \,\|\, \pi_{\theta_{t-k}})$ per update"),
    ):
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("injected staleness k (server versions)")
        ax.set_ylabel(ylabel)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", fontsize="small")
    left.set_title("what the stale gradients learn", fontsize="medium")
    right.set_title("how far behind the acting policy is", fontsize="medium")
    fig.suptitle(title)
    return fig


def staleness_table(runs: dict, last: int = 50) -> Table:
    """The numbers behind :func:`staleness_sweep`: one row per label and k with each seed's return
    over its last ``last`` episodes, their mean, and the mean KL over seeds with its [min, max]."""
    rows = []
    for label, sweep in runs.items():
        for k, (returns, kls) in staleness_outcomes(sweep, last).items():
            per_seed = ", ".join(f"{r:.0f}" for r in returns)
            rows.append((label, k, per_seed, returns.mean(), mean_range(kls, digits=2)))
    headers = ["", "k", f"return per seed, last {last} episodes", "mean", "KL(π_θt ‖ π_θt−k)"]
    return Table(rows, headers, digits=3)
