"""Notebooks 05–08: inside a distributed run (DA3C, DPPO) — how stale the workers' pushes were,
per-worker returns beside the global policy's, the parameter server's updates, where each worker's
time went, the live dashboard of such a run, and the injected-staleness sweep of notebook 06."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from rlteach.plots.core import Palette, Table, _axis, _legend_if_labelled, figure, mean_range
from rlteach.plots.learning import (
    LEARNING_X,
    _as_histories,
    _grid_axes,
    moving_average,
    run_summary,
)

if TYPE_CHECKING:
    from rlteach.history import History


def staleness_histogram(
    staleness: ArrayLike,
    ax: Axes | None = None,
    title: str = "staleness of the pushes",
    serverless: bool = False,
) -> Figure | SubFigure:
    """How many pushes arrived ``k`` versions late (``k = 0``: computed from the newest θ); with
    ``serverless`` (Hogwild A3C: no server, no pushes) how many updates came ``k`` other workers'
    updates after their read of θ."""
    fig, ax = _axis(ax)
    values = np.asarray(staleness, dtype=int)
    counts = np.bincount(values) if len(values) else np.zeros(1, dtype=int)
    ax.bar(np.arange(len(counts)), counts, color=Palette[1])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # staleness is a count: no 0.25 ticks
    if serverless:
        ax.set_xlabel("staleness: other workers' updates between the read of θ and the update")
        ax.set_ylabel("updates")
    else:
        ax.set_xlabel("staleness: versions the server had moved on since the pull")
        ax.set_ylabel("pushes")
    mean = values.mean() if len(values) else 0.0
    ax.set_title(f"{title} (mean {mean:.2f})")
    return fig


def worker_curves(
    history: History,
    ax: Axes | None = None,
    x: str = "env_steps",
    smooth: int = 20,
    title: str = "",
) -> Figure | SubFigure:
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


WHO_UPDATES = {"a3c": "shared θ", "impala": "learner"}  # whose version counts θ's updates


def server_activity(history: History, ax: Axes | None = None) -> Figure | SubFigure:
    """The version of θ against wall-clock time, its slope the update rate: the parameter
    server's (DA3C, DPPO), the shared θ's (Hogwild A3C: each worker's updates), or the learner's
    (IMPALA: its steps)."""
    fig, ax = _axis(ax)
    who = WHO_UPDATES.get(history.meta.get("algorithm", ""), "server")
    workers = sorted({r.get("worker", -1) for r in history.updates})  # -1: IMPALA's learner
    for color, worker in zip(cycle(Palette), workers):
        rows = [r for r in history.updates if r.get("worker", -1) == worker]
        ax.plot(
            [r["wall_time"] for r in rows],
            [r["version"] for r in rows],
            ".",
            ms=3,
            color=color,
            label="learner steps" if worker < 0 else f"updates of worker {worker}",
        )
    seconds = history.meta.get("seconds") or (
        history.updates[-1]["wall_time"] if history.updates else 0
    )
    versions = history.meta.get("versions", max((r["version"] for r in history.updates), default=0))
    rate = versions / seconds if seconds else 0.0
    ax.set_xlabel("wall-clock time (s)")
    ax.set_ylabel(f"{who} version")
    ax.set_title(f"{who} updates: {rate:.0f} per second")
    _legend_if_labelled(ax)
    return fig


def time_split(history: History, ax: Axes | None = None) -> Figure | SubFigure:
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


def lag_histogram(lags: ArrayLike, ax: Axes | None = None) -> Figure | SubFigure:
    """IMPALA: how many segments the learner used ``k`` of its steps after the θ they were
    collected with was published."""
    fig = staleness_histogram(lags, ax=ax, title="policy lag of the segments")
    axes = fig.axes if ax is None else [ax]
    axes[-1].set_xlabel("lag: learner steps since the θ that collected the segment")
    axes[-1].set_ylabel("segments")
    return fig


def staleness_by_design(runs: Mapping[str, Sequence[History]]) -> Figure:
    """One histogram per design (``runs``: label → the Histories of its seeds, pooled): IMPALA's
    policy lag of its segments, the others' staleness of their updates (notebook 09)."""
    ncols = min(len(runs), 2)
    fig = Figure(figsize=(5.0 * ncols, 3.4 * -(-len(runs) // ncols)), layout="constrained")
    for ax, (label, histories) in zip(_grid_axes(fig, len(runs), ncols), runs.items(), strict=True):
        histories = _as_histories(label, histories)
        if all("lags" in h.meta for h in histories):
            lag_histogram(np.concatenate([h.meta["lags"] for h in histories]), ax=ax)
        else:
            staleness = np.concatenate([h.column("staleness", "updates") for h in histories])
            serverless = all(h.meta.get("algorithm") == "a3c" for h in histories)
            staleness_histogram(staleness, ax=ax, title="staleness", serverless=serverless)
        ax.set_title(f"{label}: {ax.get_title()}", fontsize="small")
    return fig


def distributed_dashboard(history: History, title: str = "") -> Figure:
    """The live figure of a distributed run: per-worker and global returns (left), the updates
    of θ and the staleness of pushes, or for IMPALA the policy lag of its segments (right)."""
    fig = Figure(figsize=(12.0, 4.4), layout="constrained")
    left, right = fig.subfigures(1, 2, squeeze=False, width_ratios=(1.3, 1.0))[0]
    worker_curves(history, ax=left.subplots())
    top, bottom = right.subplots(2, 1)
    if history.updates:
        server_activity(history, ax=top)
        if "lags" in history.meta:
            lag_histogram(history.meta["lags"], ax=bottom)
        else:
            serverless = history.meta.get("algorithm") == "a3c"
            staleness = [r["staleness"] for r in history.updates]
            what = "updates" if serverless else "pushes"
            staleness_histogram(
                staleness, ax=bottom, title=f"staleness of the {what}", serverless=serverless
            )
    summary = run_summary(history)
    fig.suptitle(f"{title} — {summary}" if title else summary)
    return fig


def staleness_outcomes(
    sweep: Mapping[int, Sequence[History]], last: int = 50
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
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


def staleness_sweep(
    runs: Mapping[str, Mapping[int, Sequence[History]]], last: int = 50, title: str = ""
) -> Figure:
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


def staleness_table(runs: Mapping[str, Mapping[int, Sequence[History]]], last: int = 50) -> Table:
    """The numbers behind :func:`staleness_sweep`: one row per label and k with each seed's return
    over its last ``last`` episodes, their mean, and the mean KL over seeds with its [min, max]."""
    rows = []
    for label, sweep in runs.items():
        for k, (returns, kls) in staleness_outcomes(sweep, last).items():
            per_seed = ", ".join(f"{r:.0f}" for r in returns)
            rows.append((label, k, per_seed, returns.mean(), mean_range(kls, digits=2)))
    headers = ["", "k", f"return per seed, last {last} episodes", "mean", "KL(π_θt ‖ π_θt−k)"]
    return Table(rows, headers, digits=3)
