"""Notebooks 03–04: the exact bias and variance of advantage estimators (GAE(λ), n-step targets)
for a critic with a chosen error, the targets at time-limit cuts, and PPO's clipped objective and
surrogate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from rlteach.plots.core import Palette, Table, _axis, figure

if TYPE_CHECKING:
    import torch

    from rlteach.rollout import Batch
    from rlteach.tabular import TabularMDP


def bias_variance(
    stats: Sequence[Mapping[str, float]],
    xs: Sequence[float],
    xlabel: str,
    ax: Axes | None = None,
    title: str = "",
) -> Figure | SubFigure:
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


def advantage_tradeoff(
    mdp: TabularMDP,
    theta: torch.Tensor,
    critic: torch.Tensor,
    lambdas: Sequence[float],
    nsteps: Sequence[int],
    title: str = "",
) -> Figure:
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


def critic_error_kinds(
    mdp: TabularMDP, theta: torch.Tensor, size: float, lambdas: Sequence[float], seed: int = 0
) -> Figure:
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


def truncation_table(batch: Batch, gamma: float, rows: int = 6) -> Table:
    """The one-step targets at the first ``rows`` time-limit cuts of a collected ``batch``,
    bootstrapped and conflated with a termination (``advantages.truncation_targets``, notebook 03,
    section 3)."""
    from rlteach import advantages

    return Table(
        advantages.truncation_targets(batch, gamma, rows),
        ["step t", "env", "V(s_t+1)", "target, bootstrapped", "target, conflated"],
        digits=3,
    )


def clip_objective(
    clip_eps: float = 0.2, ax: Sequence[Axes] | np.ndarray | None = None
) -> Figure | SubFigure:
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


def surrogate_vs_true(
    curves: Mapping[str, np.ndarray],
    slope: float,
    title: str = "",
    xlabel: str = r"step size $\alpha$ along the direction",
) -> Figure:
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
