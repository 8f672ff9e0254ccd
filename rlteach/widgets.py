"""ipywidgets control panels: move a control, the figure below is drawn again.

Plots are drawn from the kernel's main thread into an ``Output`` widget, so ``%matplotlib inline`` is
all a notebook needs (no ipympl). Sliders that start a heavy computation use
``continuous_update=False``: the figure is redrawn when the slider is released, not on every step.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as W
import torch
from IPython.display import display

from rlteach import plots, tabular


def live_panel(draw: Callable, title: str = "", **controls: W.ValueWidget) -> W.VBox:
    """A panel of ``controls`` above an output area showing ``draw(**values)`` (a Figure).

    The figure is drawn once at creation and again whenever a control's value changes; while it is
    computed the status line says so. An exception inside ``draw`` is shown in the panel.
    """
    out = W.Output()
    status = W.HTML()

    def redraw(_change=None):
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


def _slider_style():
    return {"description_width": "initial"}


def reinforce_explorer(counts=(16, 64, 256, 1024), repeats: int = 10, seed: int = 0) -> W.VBox:
    """Notebook 01, step 7: γ, batch size, number of states, reward-to-go and baseline toggles.

    The figure compares plain REINFORCE (full return) with the variant the toggles select, on a
    random MDP with the chosen number of states and 3 actions.
    """

    def draw(gamma, max_episodes, n_states, reward_to_go, baseline):
        mdp = tabular.random_mdp(n_states, 3, gamma, seed=seed)
        theta = torch.zeros(n_states, 3, dtype=torch.float64)
        chosen = ("reward-to-go" if reward_to_go else "full return") + (
            " + baseline" if baseline else ""
        )
        variants = {"full return": dict(reward_to_go=False)}
        variants[chosen] = dict(reward_to_go=reward_to_go, baseline=baseline)
        grid = [c for c in counts if c <= max_episodes] or [max_episodes]
        return plots.reinforce_variants(mdp, theta, variants, grid, repeats, seed)

    style = _slider_style()
    return live_panel(
        draw,
        title="REINFORCE estimators: error and variance",
        gamma=W.FloatSlider(
            value=0.9,
            min=0.0,
            max=0.99,
            step=0.01,
            description="γ",
            continuous_update=False,
            style=style,
        ),
        max_episodes=W.SelectionSlider(
            options=[c for c in (16, 64, 256, 1024, 4096)],
            value=256,
            description="episodes N",
            continuous_update=False,
            style=style,
        ),
        n_states=W.IntSlider(
            value=5, min=2, max=10, description="states", continuous_update=False, style=style
        ),
        reward_to_go=W.Checkbox(value=True, description="reward-to-go"),
        baseline=W.Checkbox(value=False, description="baseline V(s)"),
    )
