"""Notebook 01 (and its widgets): the policy gradient theorem on tabular MDPs — a Monte Carlo
estimate settling, the error of REINFORCE variants against the number of episodes, their
per-episode variances, and what dropping ``γ^t`` does to the gradient."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from numpy.typing import ArrayLike

from rlteach.plots.core import Palette, _axis, figure

if TYPE_CHECKING:
    import torch

    from rlteach.tabular import TabularMDP


def running_estimate(
    samples: ArrayLike,
    exact: float,
    ax: Axes | None = None,
    label: str = "running mean",
    title: str = "",
) -> Figure | SubFigure:
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


def error_vs_samples(
    curves: Mapping[str, Mapping[str, Any]],
    ax: Axes | None = None,
    title: str = "REINFORCE error vs batch size",
) -> Figure | SubFigure:
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
    variances: Mapping[str, float],
    ax: Axes | None = None,
    title: str = "variance per episode",
    errors: Mapping[str, float] | None = None,
) -> Figure | SubFigure:
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
    gammas: ArrayLike,
    series: Mapping[str, Sequence[Mapping[str, float]]],
    title: str = "dropping γ^t: the seed's estimator",
    at: tuple[float, Mapping[str, Mapping[str, float]]] | None = None,
    axes: Sequence[Axes] | np.ndarray | None = None,
) -> Figure | SubFigure:
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


def gradient_directions(
    exact: torch.Tensor, seed_form: torch.Tensor, ax: Axes | None = None, title: str = ""
) -> Figure | SubFigure:
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
    mdp: TabularMDP,
    theta: torch.Tensor,
    variants: dict[str, dict[str, Any]],
    counts: Sequence[int],
    repeats: int = 20,
    seed: int = 0,
    title: str = "",
) -> Figure:
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
