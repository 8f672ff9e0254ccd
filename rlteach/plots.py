"""Every figure the notebooks show.

Figures are plain ``matplotlib.figure.Figure`` objects (not pyplot-managed): a notebook shows one by
leaving it as the cell's last expression or by ``display(fig)``, with ``%matplotlib inline`` and
headless alike, and nothing accumulates in pyplot's figure list. Functions that draw into an axis take
an optional ``ax`` so panels can be combined.
"""

from __future__ import annotations

import html
from itertools import cycle

import numpy as np
from matplotlib.figure import Figure

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
    ``tabular.estimator_error_curve``). Each label gets its fitted slope; a dashed ``1/√N`` guide is
    drawn through the first curve's first point.
    """
    fig, ax = _axis(ax)
    for color, (label, curve) in zip(cycle(Palette), curves.items()):
        counts, rmse = np.asarray(curve["counts"]), np.asarray(curve["rmse"])
        slope = np.polyfit(np.log(counts), np.log(rmse), 1)[0]
        ax.loglog(counts, rmse, "o-", color=color, label=f"{label} (slope {slope:.2f})")
    first = next(iter(curves.values()))
    c0, e0 = first["counts"][0], first["rmse"][0]
    guide = np.asarray(first["counts"], dtype=float)
    ax.loglog(guide, e0 * np.sqrt(c0 / guide), "k--", lw=1, label=r"$\propto 1/\sqrt{N}$")
    ax.set_xlabel("episodes per estimate N")
    ax.set_ylabel(r"RMS error $\|\hat g - \nabla J\|$")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def variance_bars(variances: dict, ax=None, title: str = "variance per episode"):
    """Bar chart of per-episode estimator variances (trace of the covariance), log scale."""
    fig, ax = _axis(ax)
    labels = list(variances)
    ax.bar(labels, [variances[k] for k in labels], color=Palette[: len(labels)])
    ax.set_yscale("log")
    ax.set_ylabel(r"tr Cov$[\hat g]$ (one episode)")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=15)
    return fig


def gamma_t_bias(gammas, series: dict, title: str = "dropping γ^t: the seed's estimator"):
    """Two panels against γ, one line per MDP: the angle between the seed's form and ∇J, and the
    relative norm of their difference ``|g_seed − ∇J| / |∇J|`` (notebook 01, step 6).

    ``series`` maps a label to ``(angles_in_degrees, relative_differences)``, each ``[len(gammas)]``.
    """
    fig, (left, right) = figure(ncols=2, width=4.6)
    for color, (label, (angles, rel_diffs)) in zip(cycle(Palette), series.items()):
        left.plot(gammas, angles, "o-", color=color, label=label)
        right.semilogy(gammas, rel_diffs, "o-", color=color, label=label)
    left.set_ylabel("angle to ∇J (degrees)")
    right.set_ylabel(r"$\|g_{seed} - \nabla J\| \,/\, \|\nabla J\|$")
    for ax in (left, right):
        ax.set_xlabel("γ")
        ax.legend(fontsize="small")
    fig.suptitle(title)
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
    error_vs_samples(curves, ax=left, title="error vs episodes")
    variance_bars({k: c["variance"] for k, c in curves.items()}, ax=right)
    fig.suptitle(title or f"{mdp.name}, γ = {mdp.gamma:g}")
    return fig
