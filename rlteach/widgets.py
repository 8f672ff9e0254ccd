"""ipywidgets control panels: move a control, the figure below is drawn again.

Plots are drawn from the kernel's main thread into an ``Output`` widget, so ``%matplotlib inline`` is
all a notebook needs (no ipympl). Sliders that start a heavy computation use
``continuous_update=False``: the figure is redrawn when the slider is released, not on every step.
"""

from __future__ import annotations

import dataclasses
import html
import math
import time
from collections.abc import Callable

import ipywidgets as W
import torch
from IPython.display import display

from rlteach import plots, tabular
from rlteach.config import make_config


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


# ---------------------------------------------------------------------------------------------
# Controls generated from a config dataclass, and the training panel built on them.

_SLIDER_STEPS = 100
_HELP_STOP = (
    "Training runs in the kernel's main thread, so the panel cannot react to a click while it "
    "runs: to stop early, interrupt the kernel (■ in the toolbar, or I, I). The trainer turns the "
    "interrupt into a partial result, which the panel keeps."
)


def _field_error(cls, name, value, reason):
    return ValueError(f"{cls.__name__}.{name} = {value!r} gets no control: {reason}")


def _log_slider(cls, name, value, meta, common):
    """A base-10 log slider from ``low`` to ``high``; an open end, or ``low <= 0``, spans three
    decades beyond the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _field_error(cls, name, value, "log=True needs a positive number")
    low = meta["low"] if meta.get("low") is not None and meta["low"] > 0 else value / 1e3
    high = meta["high"] if meta.get("high") is not None else value * 1e3
    lo, hi = math.log10(low), math.log10(high)
    return W.FloatLogSlider(
        value=value, base=10, min=lo, max=hi, step=(hi - lo) / _SLIDER_STEPS, **common
    )


def _number_control(value, meta, common):
    low, high = meta.get("low"), meta.get("high")
    integer = isinstance(value, int)
    if low is None or high is None:
        return (W.IntText if integer else W.FloatText)(value=value, **common)
    if integer:
        return W.IntSlider(value=value, min=low, max=high, step=1, **common)
    step = (high - low) / _SLIDER_STEPS
    return W.FloatSlider(value=value, min=low, max=high, step=step, readout_format=".4g", **common)


def field_control(cls, name: str, value, meta: dict):
    """The widget for one config field, or None when its value's type has none (e.g. a tuple).

    ``Dropdown`` for ``choices``; ``Checkbox`` for a bool; ``FloatLogSlider`` for ``log=True``;
    ``IntSlider``/``FloatSlider`` when ``low`` and ``high`` are both set, ``IntText``/``FloatText``
    when the range is open; ``Text`` for a str. Sliders use ``continuous_update=False``; the
    tooltip is the field's ``help``.
    """
    common = dict(description=name, tooltip=meta.get("help", ""), style=_slider_style())
    sliding = dict(common, continuous_update=False)
    if meta.get("choices") is not None:
        return W.Dropdown(options=[(str(c), c) for c in meta["choices"]], value=value, **common)
    if isinstance(value, bool):
        return W.Checkbox(value=value, indent=False, **common)
    if meta.get("log"):
        return _log_slider(cls, name, value, meta, sliding)
    if isinstance(value, (int, float)):
        return _number_control(value, meta, sliding)
    if isinstance(value, str):
        return W.Text(value=value, **common)
    return None


def config_controls(config_cls, include=None, config=None) -> dict:
    """One widget per field of the config dataclass ``config_cls``, built from its metadata
    (see :func:`field_control`), as a dict name → widget.

    ``include`` selects and orders the fields (default: every field that has a control; a listed
    field without one raises ``ValueError``). Controls start at ``config``'s values (default: the
    class defaults).
    """
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise ValueError(f"config_cls = {config_cls!r} is not allowed: must be a dataclass type")
    config = make_config(config_cls, config)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    names = list(fields) if include is None else list(include)
    unknown = [name for name in names if name not in fields]
    if unknown:
        raise ValueError(
            f"include = {names!r} is not allowed: {', '.join(unknown)} not a field of "
            f"{config_cls.__name__} (fields: {', '.join(fields)})"
        )
    controls = {}
    for name in names:
        value = getattr(config, name)
        control = field_control(config_cls, name, value, dict(fields[name].metadata))
        if control is None and include is not None:
            raise _field_error(config_cls, name, value, "only numbers, bools, str and choices do")
        if control is not None:
            controls[name] = control
    return controls


def result_summary(result, seconds: float, run: int) -> str:
    """One status line for a finished run: episodes, mean return of the last 20, seconds, and
    whether the run was interrupted."""
    history = result.history
    mean = (
        f"last-20 mean return {history.recent_mean_return():.1f}"
        if history.episodes
        else "no episode finished"
    )
    line = f"run {run}: {len(history.episodes)} episodes · {mean} · {seconds:.1f} s"
    return line + (" · stopped early — partial result kept" if result.interrupted else "")


class TrainingPanel(W.VBox):
    """Controls for a config, a Train button, a status line and a live plot of the run.

    ``panel = TrainingPanel(train_ppo, PPOConfig, include=["lr", "gamma", "total_steps"])``.
    Clicking Train (or calling :meth:`train`) builds the config with ``make_config`` from the
    controls (fields without a control keep ``config``'s values, default the class defaults), runs
    ``train_fn(config, callback=live)`` with a :class:`~rlteach.plots.LivePlot` drawing into the
    panel's ``plot`` (an Output widget; what the trainer prints goes to ``output``), and keeps the
    result in ``panel.result`` and ``panel.results`` (every run, to compare them). An invalid value
    is reported in the status line; nothing is trained.

    Stopping: training runs in the kernel's main thread, so the panel cannot react to a click
    while it runs; to stop early, interrupt the kernel (■). The trainer turns the interrupt into a
    partial result (``result.interrupted``), which the panel keeps and says so.
    """

    def __init__(
        self,
        train_fn: Callable,
        config_cls,
        include=None,
        title: str = "",
        config=None,
        live_interval: float = 0.5,
        draw=None,
    ):
        self.train_fn = train_fn
        self.draw = draw  # the live figure: plots.learning_dashboard unless given
        self.config_cls = config_cls
        self.base_config = make_config(config_cls, config)
        self.title = title
        self.live_interval = live_interval
        self.controls = config_controls(config_cls, include, self.base_config)
        self.button = W.Button(description="Train", button_style="primary", icon="play")
        self.button.on_click(lambda _button: self.train())
        self.status = W.Label()
        self.plot = W.Output()  # the live figure of the run
        self.output = W.Output()  # what the trainer prints, and its error if it fails
        self.live = None
        self.result = None
        self.results = []
        header = [W.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        super().__init__(
            [
                *header,
                W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap")),
                W.HBox([self.button, self.status]),
                W.HTML(f"<small>{html.escape(_HELP_STOP)}</small>"),
                self.plot,
                self.output,
            ]
        )

    def values(self) -> dict:
        """The controls' current values, name → value."""
        return {name: control.value for name, control in self.controls.items()}

    def train(self):
        """Train once with the controls' values (what the button does) and return the result.

        An invalid value returns None and says why in the status line. An exception from
        ``train_fn`` is shown in the output area in a kernel (and None returned), raised elsewhere.
        """
        try:
            config = make_config(self.config_cls, self.base_config, **self.values())
        except ValueError as exc:
            self._say(str(exc), error=True)
            return None
        self._say("training…")
        self.button.disabled = True
        try:
            return self._run(config)
        finally:
            self.button.disabled = False

    def _run(self, config):
        self.plot.outputs = ()
        self.live = plots.LivePlot(
            title=self.title, min_interval=self.live_interval, draw=self.draw, output=self.plot
        )
        start = time.perf_counter()
        with self.output:
            self.output.clear_output()
            try:
                result = self.train_fn(config, callback=self.live)
            except Exception:
                self._say("training failed: the error is shown below", error=True)
                raise  # in a kernel the output area shows the traceback and swallows it
            self.result = result
            self.results.append(result)
            self._say(result_summary(result, time.perf_counter() - start, len(self.results)))
            self.live.close(result.history)
            return result
        return None  # reached only when a kernel's output area swallowed the error above

    def _say(self, text: str, error: bool = False) -> None:
        self.status.value = text
        self.status.style.text_color = "#b00020" if error else None


def distributed_explorer(steps_per_worker: int = 1000, rounds: int = 30) -> W.VBox:
    """Notebook 05, section 5: workers, env delay and sync/async; each change reruns two small
    experiments with real processes — the staleness of a parameter-server run in the chosen mode,
    and the samples per second of W workers on a CartPole with the chosen per-step delay."""
    from rlteach.distributed import patterns

    def draw(workers, delay_ms, mode):
        run = patterns.staleness_run(workers=workers, rounds=rounds, mode=mode)
        speed = patterns.sampling_throughput(
            "CartPole-v1", workers, steps_per_worker, delay=delay_ms / 1000
        )
        fig, (left, right) = plots.figure(ncols=2, width=4.6)
        plots.staleness_histogram(run.staleness, ax=left, title=f"{mode}, {workers} workers")
        right.bar(["pooled"], [speed["samples_per_second"]], color=plots.Palette[2])
        right.set_ylabel("samples per second")
        right.set_title(
            f"{workers} workers, {delay_ms:g} ms per step: {speed['samples_per_second']:.0f}/s"
        )
        return fig

    style = _slider_style()
    return live_panel(
        draw,
        title="Parameter server and parallel sampling",
        workers=W.IntSlider(
            value=2, min=1, max=8, description="workers", continuous_update=False, style=style
        ),
        delay_ms=W.FloatSlider(
            value=1.0,
            min=0.0,
            max=5.0,
            step=0.5,
            description="delay (ms)",
            continuous_update=False,
            style=style,
        ),
        mode=W.ToggleButtons(options=["sync", "async"], value="async", description="server"),
    )
