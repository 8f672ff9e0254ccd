"""Notebook 08 (and its widget): what crosses the network per update — megabytes at the busiest
process and seconds at the busiest link, for a parameter server and a ring all-reduce, measured
and by the arithmetic of :mod:`rlteach.distributed.traffic`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import cycle
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from numpy.typing import ArrayLike

from rlteach.plots.core import Palette, Table, _axis


def traffic(
    measured: Mapping[str, Sequence[Mapping[str, Any]]],
    params: int,
    ax: Axes | None = None,
    title: str = "",
) -> Figure | SubFigure:
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


def _cluster_sizes(workers: ArrayLike | None) -> np.ndarray:
    """The W axis of the link plots: ``workers`` or 2…1000, spaced evenly on a log scale."""
    if workers is None:
        return np.unique(np.geomspace(2, 1000, 80).astype(int))
    return np.asarray(workers, dtype=int)


def _mark_workers(ax: Axes, at: int | None) -> None:
    if at is not None:
        ax.axvline(at, color="0.4", lw=1, ls="-.", label=f"W = {at}")


def update_bytes(
    params: int,
    workers: ArrayLike | None = None,
    at: int | None = None,
    ax: Axes | None = None,
    title: str = "",
) -> Figure | SubFigure:
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
    params: Mapping[str, int],
    alpha: float,
    beta: float,
    duplex: bool = True,
    workers: ArrayLike | None = None,
    at: int | None = None,
    ax: Axes | None = None,
    title: str = "",
) -> Figure | SubFigure:
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


def link_table(
    params: Mapping[str, int], workers: Iterable[int] = (10, 100, 1000), duplex: bool = True
) -> Table:
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
