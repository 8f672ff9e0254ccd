"""ipywidgets control panels: move a control, the figure below is drawn again.

Plots are drawn from the kernel's main thread into an ``Output`` widget, so ``%matplotlib inline`` is
all a notebook needs (no ipympl). Sliders that start a heavy computation use
``continuous_update=False``: the figure is redrawn when the slider is released, not on every step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from IPython.display import display
from matplotlib.figure import Figure, SubFigure

from rlteach import plots, tabular
from rlteach.panel import (  # noqa: F401  the training panel lives in rlteach.panel
    TrainingPanel,
    config_class_of,
    config_controls,
    field_control,
    label_style,
    result_summary,
)

Draw = Callable[..., Figure | SubFigure]  # the controls' values as keywords → the figure to show


def live_panel(draw: Draw, title: str = "", **controls: W.ValueWidget) -> W.VBox:
    """A panel of ``controls`` above an output area showing ``draw(**values)`` (a Figure).

    The figure is drawn once at creation and again whenever a control's value changes; while it is
    computed the status line says so. An exception inside ``draw`` is shown in the panel.
    """
    out = W.Output()
    status = W.HTML()

    def redraw(_change: Mapping[str, Any] | None = None) -> None:
        status.value = "<i>computing…</i>"
        with out:
            out.clear_output(wait=True)
            display(draw(**{name: c.value for name, c in controls.items()}))
        status.value = ""

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    header = [W.HTML(f"<b>{title}</b>")] if title else []
    return W.VBox(
        [
            *header,
            W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap")),
            status,
            out,
        ]
    )


def _slider(kind: type[W.ValueWidget], **kwargs: Any) -> W.ValueWidget:
    """A slider of ``kind`` (``W.FloatSlider`` …) for an explorer: the figure is redrawn when it is
    released, and its description is shown whole."""
    return kind(continuous_update=False, style=label_style(), **kwargs)


BASELINES = ("none", "constant J(θ)", "exact V^π(s)", "½ V^π(s)", "−V^π(s) (wrong sign)")


def baseline_table(
    mdp: tabular.TabularMDP, theta: torch.Tensor, choice: str
) -> bool | torch.Tensor:
    """The ``baseline`` option of ``tabular.episode_gradients`` for one of :data:`BASELINES`:
    ``False`` or a table ``b[S]``. Every choice is a function of the state, so none adds bias
    (eq. 1.9); they differ in variance only."""
    if choice not in BASELINES:
        raise ValueError(f"baseline = {choice!r} is not allowed: must be one of {BASELINES}")
    if choice == "none":
        return False
    V = tabular.state_values(mdp, theta).detach()
    scale = {"exact V^π(s)": 1.0, "½ V^π(s)": 0.5, "−V^π(s) (wrong sign)": -1.0}
    if choice == "constant J(θ)":
        return torch.full_like(V, tabular.exact_return(mdp, theta).item())
    return scale[choice] * V


EXPLORER_STEPS = 1_000_000  # environment steps one redraw of the REINFORCE panel may sample


def explorer_batches(
    counts: Sequence[int], max_episodes: int, horizon: int, repeats: int
) -> tuple[list[int], int, bool]:
    """``(grid, batches, shortened)`` for one redraw of :func:`reinforce_explorer`: the batch
    sizes of ``counts`` up to ``max_episodes`` and the number of independent batches, so the panel
    samples at most ``EXPLORER_STEPS`` steps (``batches · max(grid) · horizon``) and stays near a
    second per redraw. Fewer batches first (down to 2, the least that gives a spread); then, if
    even 2 batches are too long, the largest batch sizes are left out. ``shortened`` says whether
    either happened."""
    wanted = [c for c in counts if c <= max_episodes] or [max_episodes]
    grid = list(wanted)
    while len(grid) > 1 and 2 * grid[-1] * horizon > EXPLORER_STEPS:
        grid.pop()
    batches = max(2, min(repeats, EXPLORER_STEPS // (grid[-1] * horizon)))
    return grid, batches, batches < repeats or grid != wanted


def reinforce_explorer(
    counts: Sequence[int] = (16, 64, 256, 1024), repeats: int = 10, seed: int = 0
) -> W.VBox:
    """Notebook 01, step 7: γ, batch size, number of states, reward-to-go and the baseline.

    On a random MDP with the chosen number of states and 3 actions, under the uniform policy
    ``θ = 0``, on the same episodes (same ``seed`` at every redraw), the figure compares plain
    REINFORCE (full return), the form the checkbox selects without a baseline, and the same form
    with the chosen baseline: the bars separate what causality buys from what the baseline buys.
    Long episodes (γ near 1) get fewer batches (:func:`explorer_batches`); the title says how many.
    """

    def draw(
        gamma: float, max_episodes: int, n_states: int, reward_to_go: bool, baseline: str
    ) -> Figure | SubFigure:
        mdp = tabular.random_mdp(n_states, 3, gamma, seed=seed)
        theta = torch.zeros(n_states, 3, dtype=torch.float64)
        form = "reward-to-go" if reward_to_go else "full return"
        variants: dict[str, dict[str, Any]] = {
            "full return": dict(reward_to_go=False),
            form: dict(reward_to_go=reward_to_go),
        }
        if baseline != "none":
            variants[f"{form}, b = {baseline}"] = dict(
                reward_to_go=reward_to_go, baseline=baseline_table(mdp, theta, baseline)
            )
        horizon = tabular.default_horizon(gamma)
        grid, batches, shortened = explorer_batches(counts, max_episodes, horizon, repeats)
        title = (
            f"{mdp.name}, θ = 0, γ = {gamma:g}: {batches} batches of ≤ {grid[-1]} episodes"
            f" × {horizon} steps" + (" (cut down to redraw fast)" if shortened else "")
        )
        return plots.reinforce_variants(mdp, theta, variants, grid, batches, seed, title=title)

    return live_panel(
        draw,
        title="REINFORCE estimators: error and variance",
        gamma=_slider(W.FloatSlider, value=0.9, min=0.0, max=0.99, step=0.01, description="γ"),
        max_episodes=_slider(
            W.SelectionSlider,
            options=list(counts),
            value=counts[min(2, len(counts) - 1)],
            description="episodes N",
        ),
        n_states=_slider(W.IntSlider, value=5, min=2, max=10, description="states"),
        reward_to_go=W.Checkbox(value=True, description="reward-to-go"),
        baseline=W.Dropdown(
            options=BASELINES,
            value="exact V^π(s)",
            description="baseline b(s)",
            style=label_style(),
        ),
    )


def gamma_t_explorer(
    problems: Mapping[str, tuple[tabular.TabularMDP, torch.Tensor]],
    gammas: Sequence[float] | np.ndarray,
    detail: str | None = None,
) -> W.VBox:
    """Notebook 01, step 6: a γ slider on the angle between the seed's form and ∇J (eq. 1.10).

    ``problems`` maps a label to ``(mdp, theta)``. The curves over ``gammas`` are computed once;
    each move of the slider computes the two gradients at the new γ (exactly, no sampling) and
    marks it on the curves, and shows the unit vectors ``∇J/|∇J|`` and ``g_seed/|g_seed|`` of the
    ``detail`` problem (default: the last) entry by entry.
    """
    detail = list(problems)[-1] if detail is None else detail
    series = {
        label: [tabular.seed_form_comparison(m.with_gamma(g), th) for g in gammas]
        for label, (m, th) in problems.items()
    }

    def draw(gamma: float) -> Figure:
        marks = {
            label: tabular.seed_form_comparison(m.with_gamma(gamma), th)
            for label, (m, th) in problems.items()
        }
        fig, axes = plots.figure(ncols=3, width=4.2)
        plots.gamma_t_bias(gammas, series, f"γ = {gamma:.2f}", at=(gamma, marks), axes=axes[:2])
        m, th = problems[detail]
        plots.gradient_directions(
            tabular.autograd_gradient(m.with_gamma(gamma), th),
            tabular.seed_form_gradient(m.with_gamma(gamma), th),
            ax=axes[2],
            title=f"{detail}: angle {marks[detail]['angle']:.1f}°",
        )
        return fig

    slider = _slider(W.FloatSlider, value=0.9, min=0.05, max=0.99, step=0.01, description="γ")
    return live_panel(draw, title="Dropping γ^t: direction and size", gamma=slider)


def critic_error_explorer(
    mdp: tabular.TabularMDP,
    theta: torch.Tensor,
    lambdas: Sequence[float],
    nsteps: Sequence[int],
    seed: int = 0,
) -> W.VBox:
    """Notebook 03, section 2: the kind, the size and the draw (``seed``, for the random kinds
    ``"noise"`` and ``"other policy"``) of the critic's error; each change redraws the exact
    bias/variance of GAE(λ) and n-step targets (``plots.advantage_tradeoff``)."""

    def draw(kind: str, size: float, seed: int) -> Figure | SubFigure:
        critic = tabular.critic_with_error(mdp, theta, kind, size, seed)
        drawn = f", draw {seed}" if kind in ("noise", "other policy") else ""
        return plots.advantage_tradeoff(
            mdp, theta, critic, lambdas, nsteps, title=f"critic error: {kind}{drawn}, size {size:g}"
        )

    return live_panel(
        draw,
        title="Bias and variance of advantage targets, by the critic's error",
        kind=W.ToggleButtons(options=tabular.CRITIC_ERRORS, value="noise", description="error"),
        size=_slider(
            W.FloatSlider,
            value=1.0,
            min=0.0,
            max=3.0,
            step=0.1,
            description="size (RMS over states)",
        ),
        seed=_slider(W.IntSlider, value=seed, min=0, max=max(9, seed), description="draw (seed)"),
    )


def clip_explorer(clip_eps: float = 0.2) -> W.VBox:
    """Notebook 04, section 2: the clip range ε on the plot of one sample's ``L^CLIP`` against the
    ratio (``plots.clip_objective``, eq. 4.3); analytic, redrawn as the slider moves."""
    return live_panel(
        lambda clip_eps: plots.clip_objective(clip_eps=clip_eps),
        title="L^CLIP of one sample against its ratio r",
        clip_eps=_slider(
            W.FloatSlider, value=clip_eps, min=0.05, max=0.95, step=0.05, description="clip range ε"
        ),
    )


def link_explorer(params: int = 1_000_000, workers: int = 100) -> W.VBox:
    """Notebook 08, section 2: the number of workers W, the model size P, the link's latency α and
    duplex on the bytes (eqs. 8.1–8.2) and the seconds (α–β model, eqs. 8.3–8.6) of one update at
    the busiest process, parameter server against ring all-reduce, at β = 10 Gbit/s. Analytic:
    each redraw evaluates the formulas, no process is started."""
    from rlteach.distributed.traffic import LINK_BETA, link_seconds

    def draw(workers: int, params: float, alpha_us: float, duplex: bool) -> Figure:
        n_params, alpha = int(params), alpha_us * 1e-6  # the log slider gives a float
        ring = link_seconds("all-reduce", workers, n_params, alpha, LINK_BETA, duplex)
        server = link_seconds("parameter server", workers, n_params, alpha, LINK_BETA, duplex)
        fig, (left, right) = plots.figure(ncols=2, width=5.2)
        plots.update_bytes(n_params, at=workers, ax=left)
        plots.update_seconds(
            {f"P = {n_params:,}": n_params}, alpha, LINK_BETA, duplex, at=workers, ax=right
        )
        fig.suptitle(
            f"W = {workers}: ring {ring['seconds'] * 1e3:.3g} ms "
            f"({ring['latency'] / ring['seconds']:.0%} latency), "
            f"server {server['seconds'] * 1e3:.3g} ms per update"
        )
        return fig

    return live_panel(
        draw,
        title="Parameter server vs ring all-reduce: bytes and seconds per update",
        workers=_slider(W.IntSlider, value=workers, min=2, max=1000, description="workers W"),
        params=_slider(
            W.FloatLogSlider, value=params, base=10, min=3, max=9, step=0.25, description="params P"
        ),
        alpha_us=_slider(
            W.FloatLogSlider,
            value=10.0,
            base=10,
            min=0,
            max=3,
            step=0.25,
            description="latency α (µs)",
        ),
        duplex=W.Checkbox(value=True, description="full duplex"),
    )


def distributed_explorer(steps: int = 600, rounds: int = 30) -> W.VBox:
    """Notebook 05, section 5: workers, env delay and its kind, learner time and sync/async; each
    change reruns two small experiments with real processes — the staleness of a parameter-server
    run of ``rounds`` rounds in the chosen mode (left), and a fixed amount of work (``steps`` env
    steps in two rounds, each followed by the serial learner update) done by 1 … W workers, its
    speed-up and samples per second drawn against Amdahl's law (5.2) (right)."""
    import os

    from rlteach.distributed import patterns

    def draw(
        workers: int, delay_ms: float, delay_kind: str, learner_ms: float, mode: str
    ) -> Figure:
        run = patterns.staleness_run(workers=workers, rounds=rounds, mode=mode)
        load = patterns.Workload(
            "fixed",
            steps,
            rounds=2,
            learner_seconds=learner_ms / 1000,
            delay=delay_ms / 1000,
            delay_kind=delay_kind,
        )
        scaling = patterns.measure_scaling({"": load}, range(1, workers + 1), repeats=1)[""]
        fig, (left, right) = plots.figure(ncols=2, width=5.0)
        plots.staleness_histogram(run.staleness, ax=left, title=f"{mode}, {workers} workers")
        plots.scaling_law(
            scaling,
            ax=right,
            title=f"{steps} steps, {delay_ms:g} ms {delay_kind} each, {learner_ms:g} ms learner",
            cores=os.cpu_count(),
        )
        return fig

    return live_panel(
        draw,
        title="Parameter server and parallel sampling",
        workers=_slider(W.IntSlider, value=4, min=1, max=8, description="workers"),
        delay_ms=_slider(
            W.FloatSlider, value=1.0, min=0.0, max=5.0, step=0.5, description="delay (ms)"
        ),
        delay_kind=W.ToggleButtons(options=["sleep", "busy"], value="sleep", description="delay"),
        learner_ms=_slider(
            W.FloatSlider, value=20.0, min=0.0, max=100.0, step=10.0, description="learner (ms)"
        ),
        mode=W.ToggleButtons(options=["sync", "async"], value="async", description="server"),
    )
