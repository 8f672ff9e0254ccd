"""Learning curves, training diagnostics and seed summaries of any run, single-process or
distributed (notebooks 02–07): one run or several seeds against env steps or wall time, the
update-row fields in small multiples, the tables that sum up seeds, and the dashboard
:class:`~rlteach.plots.LivePlot` redraws."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import cycle

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from numpy.typing import ArrayLike

from rlteach.history import History
from rlteach.plots.core import Palette, Table, _axis, figure, mean_range

LEARNING_X = {"env_steps": "environment steps", "wall_time": "wall-clock time (s)"}
SEED_BANDS = {"minmax": "min–max over seeds", "std": "±1 std over seeds"}
BOOKKEEPING_KEYS = ("update", "env_steps", "wall_time")
DASHBOARD_KEYS = ("policy_objective", "value_loss", "entropy", "approx_kl")
_GRID_POINTS = 200


def moving_average(values: ArrayLike, window: int) -> np.ndarray:
    """Trailing moving average ``m[i] = mean(values[i-k+1 : i+1])`` with ``k = min(i+1, window)``.

    ``values[E] -> m[E]``: the first ``window - 1`` points average over the episodes seen so far, so
    the curve starts at the first episode instead of ``window`` episodes later.
    """
    x = np.asarray(values, dtype=float)
    sums = np.concatenate([[0.0], np.cumsum(x)])
    ends = np.arange(1, len(x) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _episode_curve(
    history: History, x: str, smooth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x[E], returns[E], smoothed[E])`` of a history's finished episodes, ordered by ``x``."""
    xs = history.column(x)
    order = np.argsort(xs, kind="stable")
    returns = history.column("return")[order]
    return xs[order], returns, moving_average(returns, smooth)


def _last_per_x(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last ``y`` of each run of equal ``x`` (episodes logged at the same step), so
    ``np.interp`` gets strictly increasing ``x``."""
    keep = np.append(xs[1:] != xs[:-1], True)
    return xs[keep], ys[keep]


def _check_learning_args(runs: object, x: str, smooth: int, band: str) -> None:
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


def _as_histories(label: object, run: History | Iterable[History]) -> list[History]:
    histories = [run] if isinstance(run, History) else list(run)
    if not histories or not all(isinstance(h, History) for h in histories):
        raise ValueError(
            f"runs[{label!r}] = {run!r} is not allowed: must be a History or a non-empty list of "
            "Histories (one per seed)"
        )
    return histories


def _single_run(ax: Axes, label: str, history: History, x: str, smooth: int, color: str) -> None:
    xs, returns, smoothed = _episode_curve(history, x, smooth)
    if len(xs) == 0:
        ax.plot([], [], color=color, label=f"{label} (no episodes yet)")
        return
    ax.plot(xs, returns, ".", color=color, alpha=0.25, ms=3, label=f"_{label} episodes")
    ax.plot(xs, smoothed, color=color, lw=2, label=label)


def seed_grid_curves(
    histories: Iterable[History], x: str, smooth: int
) -> tuple[np.ndarray, np.ndarray]:
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


def _seed_runs(
    ax: Axes,
    label: str,
    histories: Sequence[History],
    x: str,
    smooth: int,
    color: str,
    band: str,
) -> None:
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
    runs: dict[str, History | Sequence[History]],
    x: str = "env_steps",
    smooth: int = 20,
    ax: Axes | None = None,
    title: str = "learning curves",
    band: str = "minmax",
) -> Figure | SubFigure:
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


def seed_summary(runs: Mapping[str, Sequence[History]], last: int = 20) -> Table:
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


def diagnostic_keys(history: History) -> list[str]:
    """Every numeric field of the update rows, in first-seen order, except update/env_steps/
    wall_time (booleans and strings are left out)."""
    keys: dict[str, None] = {}
    for row in history.updates:
        for key, value in row.items():
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if numeric and key not in BOOKKEEPING_KEYS:
                keys.setdefault(key, None)
    return list(keys)


def _grid_axes(container: Figure | SubFigure, n: int, ncols: int = 3) -> np.ndarray:
    """``n`` axes in rows of ``ncols`` inside a Figure or SubFigure; spare cells are hidden."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    axes = container.subplots(nrows, ncols, squeeze=False).ravel()
    for spare in axes[n:]:
        spare.set_visible(False)
    return axes[:n]


def _check_keys(history: History, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in diagnostic_keys(history)]
    if missing:
        raise ValueError(
            f"keys = {list(keys)!r} is not allowed: {', '.join(missing)} not among the numeric "
            f"update fields of this history ({', '.join(diagnostic_keys(history)) or 'none yet'})"
        )


def diagnostics(
    history: History,
    keys: Iterable[str] | None = None,
    axes: Sequence[Axes] | np.ndarray | None = None,
) -> Figure:
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
        size = (3.4 * ncols, 2.6 * -(-panels // ncols))
        axes = _grid_axes(Figure(figsize=size, layout="constrained"), panels, ncols)
    fig = axes[0].get_figure(root=True)
    assert fig is not None  # the axes are on a figure
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


def run_summary(history: History) -> str:
    """One line: env steps, finished episodes, mean return of the last 20, seconds."""
    steps = history.updates[-1]["env_steps"] if history.updates else 0
    mean = history.recent_mean_return()
    seconds = history.updates[-1]["wall_time"] if history.updates else 0.0
    last = f"last-20 mean return {mean:.1f}" if history.episodes else "no episode finished yet"
    return f"{steps:,} env steps · {len(history.episodes)} episodes · {last} · {seconds:.0f} s"


def learning_dashboard(history: History, title: str = "") -> Figure:
    """Learning curve (left) beside up to four key diagnostics (right), titled with
    :func:`run_summary`; the figure :class:`~rlteach.plots.LivePlot` redraws.

    The diagnostics shown are those of ``DASHBOARD_KEYS`` the history has, else its first four
    numeric update fields.
    """
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    left, right = fig.subfigures(1, 2, squeeze=False, width_ratios=(1.1, 1.0))[0]
    learning_curves({"return": history}, ax=left.subplots(), title="learning curve")
    present = diagnostic_keys(history)
    keys = [k for k in DASHBOARD_KEYS if k in present] or present[:4]
    diagnostics(history, keys, axes=_grid_axes(right, max(len(keys), 1), ncols=2))
    fig.suptitle(f"{title} — {run_summary(history)}" if title else run_summary(history))
    return fig


def seed_table(
    runs: Mapping[str, Sequence[History]], keys: Sequence[str], last: int = 50, digits: int = 3
) -> Table:
    """One row per label of ``runs`` (label → list of Histories, one per seed): for each update
    field in ``keys`` its median over the updates of a run, then the mean return of the last
    ``last`` episodes; each cell is the mean over seeds with the [min, max] over seeds."""

    def cell(values: ArrayLike) -> str:
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


def seed_metrics(
    runs: Mapping[str, Sequence[History]],
    metrics: Mapping[str, Callable[[History], float]],
    digits: int = 3,
) -> Table:
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


def diagnostic_comparison(
    runs: Mapping[str, History], keys: Sequence[str], title: str = ""
) -> Figure:
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


def _update_grid(histories: Sequence[History], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps[G], values[S, G])``: one update-row field of several seeds on the env steps
    every seed reached (linear interpolation between updates)."""
    series = [(h.column("env_steps", "updates"), h.column(key, "updates")) for h in histories]
    hi = min(xs[-1] for xs, _ in series)
    lo = max(xs[0] for xs, _ in series)
    grid = np.linspace(lo, hi, _GRID_POINTS)
    return grid, np.array([np.interp(grid, xs, ys) for xs, ys in series])


def diagnostic_bands(
    runs: Mapping[str, Sequence[History]],
    keys: Sequence[str],
    levels: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "",
) -> Figure:
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
