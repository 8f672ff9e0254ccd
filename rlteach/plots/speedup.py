"""Notebooks 05 and 07: how throughput, and time and samples to a return, scale with the number
of workers — measured speed-ups against Amdahl's and Gustafson's laws, with their tables."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from itertools import cycle
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import ScalarFormatter
from numpy.typing import ArrayLike

from rlteach.plots.core import Palette, Table, _axis, figure, mean_range, median_range

if TYPE_CHECKING:
    from rlteach.distributed.patterns import Scaling


def _measured_points(
    ax: Axes, workers: np.ndarray, values: ArrayLike, color: str, label: str
) -> np.ndarray:
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


def _cores_line(ax: Axes, cores: int | None) -> None:
    if cores:
        ax.axvline(cores, color="grey", ls="--", lw=1, label=f"os.cpu_count() = {cores} cores")


def scaling(
    workers: ArrayLike,
    rates: Mapping[str, ArrayLike],
    serial_fractions: Mapping[str, float] | None = None,
    ax: Axes | None = None,
    title: str = "samples per second vs workers",
    cores: int | None = None,
) -> Figure | SubFigure:
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
    tables: Mapping[str, Mapping[str, Any]],
    laws: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    cores: int | None = None,
    target: float = 475,
) -> Figure:
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


def worker_scaling_table(
    tables: Mapping[str, Mapping[str, Any]],
    laws: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    digits: int = 3,
) -> Table:
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


def _median_and_range(
    ax: Axes, workers: np.ndarray, values: ArrayLike, color: str, label: str
) -> np.ndarray:
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


def scaling_law(
    result: Scaling, ax: Axes | None = None, title: str = "", cores: int | None = None
) -> Figure | SubFigure:
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


def scaling_table(results: Mapping[str, Scaling], digits: int = 3) -> Table:
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


def scaling_laws(results: Mapping[str, Scaling], cores: int | None = None) -> Figure:
    """:func:`scaling_law` side by side for each label → ``Scaling`` of ``results``."""
    fig, axes = figure(ncols=len(results), width=5.0)
    for ax, (label, result) in zip(np.atleast_1d(axes), results.items(), strict=True):
        scaling_law(result, ax=ax, title=label, cores=cores)
    return fig
