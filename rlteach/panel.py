"""The training panel of notebooks 02–07: controls generated from a config, Train and Stop, the
run's progress, and every run of the session side by side.

``panel = TrainingPanel(rlteach.train_ppo, include=["lr", "clip_eps", "total_steps"])`` shows one
control per chosen config field (:func:`config_controls`, from the fields' metadata), a Train and a
Stop button, a progress line, the live figure of the running run, and the comparison of all runs:
their learning curves in one plot, each labelled by the settings that differ from the session's run 1,
and a table of runs. ``panel.runs`` gives them to code.

How Stop works while training runs in the kernel's main thread: the trainer calls the panel after
every update; the panel then lets the kernel handle the widget events that arrived meanwhile
(``jupyter_ui_poll.ui_events``), the Stop click among them, and ends the run by raising
``KeyboardInterrupt`` — the path the kernel's ■ takes, which every trainer turns into a partial
result after stopping its worker processes. So a run stops at the end of the update in progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import ipywidgets as W
from matplotlib.figure import Figure, SubFigure

from rlteach import plots
from rlteach.algos import TrainResult
from rlteach.config import make_config
from rlteach.history import History, env_steps_per_second, steps_to
from rlteach.plots.live import display_data, in_kernel
from rlteach.registry import algorithm_of

TrainFn = Callable[..., TrainResult]  # train_fn(config, callback=live, **choices), e.g. train_ppo
Poll = Callable[[int], None]  # poll(n): handle up to n pending widget events

_SLIDER_STEPS = 100
_HELP_STOP = (
    "Stop ends the run at the end of the update in progress and keeps what it has learned (the "
    "kernel's ■ in the toolbar does the same). Each run joins the comparison below, labelled by "
    "the settings that differ from run 1's. One run per setting is one seed: change the seed "
    "and run again before you conclude that a setting is better."
)


def label_style() -> dict[str, str]:
    """A widget style that shows the description whole."""
    return {"description_width": "initial"}


# ---------------------------------------------------------------------------------------------
# Controls generated from a config dataclass.


def _field_error(cls: type, name: str, value: object, reason: str) -> ValueError:
    return ValueError(f"{cls.__name__}.{name} = {value!r} gets no control: {reason}")


def _log_slider(
    cls: type, name: str, value: object, meta: Mapping[str, Any], common: dict[str, Any]
) -> W.FloatLogSlider:
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


def _number_control(value: float, meta: Mapping[str, Any], common: dict[str, Any]) -> W.ValueWidget:
    low, high = meta.get("low"), meta.get("high")
    integer = isinstance(value, int)
    if low is None or high is None:
        return (W.IntText if integer else W.FloatText)(value=value, **common)
    if integer:
        return W.IntSlider(value=value, min=low, max=high, step=1, **common)
    step = (high - low) / _SLIDER_STEPS
    return W.FloatSlider(value=value, min=low, max=high, step=step, readout_format=".4g", **common)


def field_control(
    cls: type, name: str, value: object, meta: Mapping[str, Any]
) -> W.ValueWidget | None:
    """The widget for one config field, or None when its value's type has none (e.g. a tuple).

    ``Dropdown`` for ``choices``; ``Checkbox`` for a bool; ``FloatLogSlider`` for ``log=True``;
    ``IntSlider``/``FloatSlider`` when ``low`` and ``high`` are both set, ``IntText``/``FloatText``
    when the range is open; ``Text`` for a str. Sliders use ``continuous_update=False``; the
    tooltip is the field's ``help``.
    """
    common = dict(description=name, tooltip=meta.get("help", ""), style=label_style())
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


def config_controls(
    config_cls: type, include: Iterable[str] | None = None, config: Any = None
) -> dict[str, W.ValueWidget]:
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
    controls: dict[str, W.ValueWidget] = {}
    for name in names:
        value = getattr(config, name)
        control = field_control(config_cls, name, value, dict(fields[name].metadata))
        if control is None and include is not None:
            raise _field_error(config_cls, name, value, "only numbers, bools, str and choices do")
        if control is not None:
            controls[name] = control
    return controls


def result_summary(result: TrainResult, seconds: float, run: int) -> str:
    """One status line for a finished run: episodes, mean return of the last 20, seconds, and
    whether the run was interrupted."""
    history = result.history
    mean = (
        f"last-20 mean return {history.recent_mean_return():.1f}"
        if history.episodes
        else "no episode finished"
    )
    line = f"run {run}: {len(history.episodes)} episodes · {mean} · {seconds:.1f} s"
    return line + (" · stopped — partial result kept" if result.interrupted else "")


def config_class_of(train_fn: TrainFn) -> type:
    """The config dataclass of the registered algorithm whose trainer is ``train_fn``;
    ``ValueError`` for a function the registry does not know (pass its ``config_cls`` then)."""
    algorithm = algorithm_of(train_fn)
    if algorithm is None:
        raise ValueError(
            f"{getattr(train_fn, '__name__', train_fn)!r} is not a registered trainer "
            "(rlteach.registry.ALGORITHMS): pass config_cls, the dataclass of its settings"
        )
    return algorithm.config_class()


# ---------------------------------------------------------------------------------------------
# The runs of a session, side by side.


def format_value(value: object) -> str:
    """A setting as a label shows it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclasses.dataclass
class Run:
    """One Train of a panel: its ``number`` in the session, the ``settings`` it was trained with
    (the panel's controls and choices, name → value), its ``result`` and wall-clock ``seconds``."""

    number: int
    settings: dict[str, Any]
    result: TrainResult
    seconds: float

    @property
    def history(self) -> History:
        return self.result.history

    @property
    def env_steps(self) -> int:
        """Env steps of the last update (0 before the first)."""
        updates = self.history.updates
        return int(updates[-1]["env_steps"]) if updates else 0

    @property
    def final_return(self) -> float:
        """Mean of the last 20 training returns; NaN before the first episode ends."""
        return self.history.recent_mean_return() if self.history.episodes else math.nan

    def changes(self, reference: Mapping[str, Any]) -> dict[str, Any]:
        """The settings whose value, as a label shows it (:func:`format_value`), differs from
        ``reference``'s: name → this run's value."""
        return {
            k: v
            for k, v in self.settings.items()
            if k not in reference or format_value(v) != format_value(reference[k])
        }

    def label(self, reference: Mapping[str, Any]) -> str:
        """``"run 2: lr = 0.001"``: the number and the settings that differ from ``reference``,
        the settings of the session's run 1 (``"run 1"`` for that run, ``"run 3: same settings"``
        for another run without a difference)."""
        changed = ", ".join(f"{k} = {format_value(v)}" for k, v in self.changes(reference).items())
        if self.number == 1 and not changed:
            return "run 1"
        return f"run {self.number}: {changed or 'same settings'}"


def best_run(runs: Sequence[Run], target: float | None = None) -> Run:
    """The run with the highest :attr:`Run.final_return` (a run without episodes counts as −∞);
    among equal ones, the one that reached ``target`` in the fewest env steps, then the earliest."""
    if not runs:
        raise ValueError("runs = [] is not allowed: there is no best of no runs")

    def rank(run: Run) -> tuple[float, float, int]:
        score = -math.inf if math.isnan(run.final_return) else run.final_return
        reach = math.inf if target is None else steps_to(run.history, target)
        return (-score, math.inf if math.isnan(reach) else reach, run.number)

    return min(runs, key=rank)


def runs_table(
    runs: Sequence[Run], target: float | None, reference: Mapping[str, Any]
) -> plots.Table:
    """One row per run: its label (:meth:`Run.label` against ``reference``), env steps, seconds,
    the mean of its last 20 training returns (sampled actions, not a greedy evaluation), the env
    steps until that mean first reached ``target`` ("not reached" when it did not; no column when
    ``target`` is None) and whether it was stopped before ``total_steps``."""
    headers = ["run", "env steps", "seconds", "last-20 mean training return"]
    headers += [] if target is None else [f"env steps until last-20 mean ≥ {target:g}"]
    headers.append("ended")
    rows = []
    for run in runs:
        row: list[object] = [run.label(reference), f"{run.env_steps:,}", f"{run.seconds:.1f}"]
        row.append("no episode yet" if math.isnan(run.final_return) else f"{run.final_return:.1f}")
        if target is not None:
            reached = steps_to(run.history, target)
            row.append("not reached" if math.isnan(reached) else f"{reached:,.0f}")
        rows.append([*row, "stopped" if run.result.interrupted else "finished"])
    return plots.Table(rows, headers)


def reward_threshold(config: object) -> float | None:
    """The return at which gymnasium counts ``config.env_id`` as solved (475 for CartPole-v1), or
    None when the env has none or the config names no registered env."""
    env_id = getattr(config, "env_id", None)
    if env_id not in gym.registry:
        return None
    return gym.spec(env_id).reward_threshold


# ---------------------------------------------------------------------------------------------
# Progress, and widget events while a run holds the kernel.


def progress(history: History, total_steps: int | None) -> tuple[float, str]:
    """The fraction of ``total_steps`` done and a line such as ``"12,288 / 100,000 env steps ·
    3,100 steps/s · about 28 s left"``; the rate is measured between the first and the last
    update (so a distributed run's start-up does not count), or from the start before there are
    two updates."""
    steps = int(history.updates[-1]["env_steps"]) if history.updates else 0
    rate = env_steps_per_second(history)
    if math.isnan(rate) and history.elapsed() > 0:
        rate = steps / history.elapsed()
    if not total_steps:
        return 0.0, f"{steps:,} env steps · {rate:,.0f} steps/s"
    done = min(1.0, steps / total_steps)
    left = (total_steps - steps) / rate if rate > 0 else math.inf
    when = "" if math.isinf(left) else f" · about {left:.0f} s left"
    return done, f"{steps:,} / {total_steps:,} env steps · {rate:,.0f} steps/s{when}"


def ended(run: Run, total_steps: int | None) -> str:
    """The progress line once ``run`` has ended: ``"done: 100,352 env steps in 12.3 s"`` or
    ``"stopped at 12,288 / 100,000 env steps, after 3.1 s"``."""
    if run.result.interrupted:
        budget = f" / {total_steps:,}" if total_steps else ""
        return f"stopped at {run.env_steps:,}{budget} env steps, after {run.seconds:.1f} s"
    return f"done: {run.env_steps:,} env steps in {run.seconds:.1f} s"


@contextlib.contextmanager
def widget_events(from_click: bool) -> Iterator[Poll]:
    """``with widget_events(from_click) as poll:`` — ``poll(n)`` lets the kernel handle up to ``n``
    widget events that arrived while the block runs (``jupyter_ui_poll.ui_events``); a no-op
    outside a kernel.

    While it polls, jupyter-ui-poll holds back the cells the student runs, and runs them once the
    *cell* that polled has ended. A run started by the Train button is not a cell, so that moment
    never comes: then (``from_click``) the held-back cells are handed back when the block ends, or
    the notebook would run no cell again."""
    if not in_kernel():
        yield lambda n: None
        return
    from jupyter_ui_poll import ui_events

    try:
        with ui_events() as poll:
            yield poll
    finally:
        if from_click:
            run_held_back_cells()


def run_held_back_cells() -> None:
    """Hand the cells jupyter-ui-poll held back to the kernel, as it does itself after a cell (its
    ``post_run_cell`` hook: restore the kernel's handler, run them in order)."""
    from jupyter_ui_poll._poll import KernelWrapper

    wrapper = KernelWrapper._current
    if wrapper is not None:
        wrapper._post_run_cell()


# ---------------------------------------------------------------------------------------------
# The panel.


class TrainingPanel(W.VBox):
    """Controls for a config; Train and Stop; progress; the live figure of the running run; and
    every run of the session side by side (see the module docstring).

    ``panel = TrainingPanel(train_ppo, include=["lr", "gamma", "total_steps"])``: the config class
    is the algorithm's in the registry (:mod:`rlteach.registry`) unless ``config_cls`` is given.
    Train (or :meth:`train`) builds the config with ``make_config`` from the controls (fields
    without a control keep ``config``'s values, default the class defaults), runs
    ``train_fn(config, callback=...)``, draws a :class:`~rlteach.plots.LivePlot` into ``plot`` (what
    the trainer prints goes to ``output``), and adds a :class:`Run` to ``panel.runs``; ``panel.result``
    is the last result. An invalid value is reported in the status line; nothing is trained.

    ``choices`` offers keyword arguments of ``train_fn`` that are not config fields, each as a
    dropdown (name → allowed values, the first preselected), e.g. ``choices={"backend": ("local",
    "ray", "torchrun")}`` for :func:`~rlteach.run_dppo`.

    The comparison below the live figure shows every run's learning curve, labelled by the
    settings that differ from the session's run 1 (``reference``), and a table
    (:func:`runs_table`) with the env steps to ``target`` (default: the env's
    ``reward_threshold``, 475 for CartPole-v1; no column when the env has none). Clear runs
    empties it; Keep best keeps :func:`best_run`. Labels compare with run 1 even once it is
    cleared.
    """

    POLL_EVENTS = 10  # widget events handled per trainer callback

    def __init__(
        self,
        train_fn: TrainFn,
        config_cls: type | None = None,
        include: Iterable[str] | None = None,
        title: str = "",
        config: Any = None,
        live_interval: float = 0.5,
        draw: Callable[..., Figure] | None = None,
        choices: Mapping[str, Sequence[object]] | None = None,
        target: float | None = None,
    ) -> None:
        self.train_fn = train_fn
        self.draw = draw  # the live figure: plots.learning_dashboard unless given
        self.config_cls = config_cls or config_class_of(train_fn)
        self.base_config = make_config(self.config_cls, config)
        self.target = reward_threshold(self.base_config) if target is None else target
        self.title = title
        self.live_interval = live_interval
        self.controls = config_controls(self.config_cls, include, self.base_config)
        self.choices = {
            name: W.Dropdown(
                options=list(allowed), value=allowed[0], description=name, style=label_style()
            )
            for name, allowed in (choices or {}).items()
        }
        self.live: plots.LivePlot | None = None
        self.result: TrainResult | None = None
        self.runs: list[Run] = []
        self._numbered = 0  # runs trained in this session, cleared ones included
        self.reference: dict[str, Any] = {}  # the settings of run 1, which labels compare with
        self._stop = ""  # "" | "asked": the Stop button was clicked | "sent": the run was told
        self._build_widgets()

    def _build_widgets(self) -> None:
        self.train_button = W.Button(description="Train", button_style="primary", icon="play")
        self.stop_button = W.Button(
            description="Stop", button_style="danger", icon="stop", disabled=True
        )
        self.clear_button = W.Button(description="Clear runs", icon="trash", disabled=True)
        self.best_button = W.Button(description="Keep best", icon="trophy", disabled=True)
        self.train_button.on_click(lambda _button: self._train(from_click=True))
        self.stop_button.on_click(lambda _button: self.stop())
        self.clear_button.on_click(lambda _button: self.clear())
        self.best_button.on_click(lambda _button: self.keep_best())
        self.status = W.Label().add_class("rlteach-status")
        self.progress_bar = W.FloatProgress(value=0.0, min=0.0, max=1.0)
        self.progress = W.Label().add_class("rlteach-progress")
        self.plot = W.Output()  # the live figure of the running (or last) run
        self.output = W.Output()  # what the trainer prints, and its error if it fails
        self.comparison = W.Output().add_class("rlteach-runs")  # every run's curve, the table
        header = [W.HTML(f"<b>{html.escape(self.title)}</b>")] if self.title else []
        super().__init__(
            [
                *header,
                W.HBox(
                    [*self.controls.values(), *self.choices.values()],
                    layout=W.Layout(flex_flow="row wrap"),
                ),
                W.HBox([self.train_button, self.stop_button, self.status]),
                W.HBox([self.progress_bar, self.progress]),
                W.HTML(f"<small>{html.escape(_HELP_STOP)}</small>"),
                self.plot,
                self.output,
                W.HBox(
                    [W.HTML("<b>Runs of this session</b>"), self.clear_button, self.best_button]
                ),
                self.comparison,
            ]
        )

    @property
    def results(self) -> list[TrainResult]:
        """The results of :attr:`runs`, in order."""
        return [run.result for run in self.runs]

    def values(self) -> dict[str, Any]:
        """The controls' current values, name → value."""
        return {name: control.value for name, control in self.controls.items()}

    def settings(self) -> dict[str, Any]:
        """What a run is trained with: the controls' and the choices' values, name → value."""
        return {**self.values(), **{n: c.value for n, c in self.choices.items()}}

    # -- training ------------------------------------------------------------------------------

    def train(self) -> TrainResult | None:
        """Train once with the controls' values (what the button does) and return the result.

        An invalid value returns None and says why in the status line. An exception from
        ``train_fn`` is shown in the output area in a kernel (and None returned), raised elsewhere.
        """
        return self._train(from_click=False)

    def stop(self) -> None:
        """Ask the running run to stop at the end of its update (what the Stop button does)."""
        if self.stop_button.disabled:
            return
        self._stop = "asked"
        self.stop_button.disabled = True
        self._say("stopping at the end of the update in progress…")

    def _train(self, from_click: bool) -> TrainResult | None:
        try:
            config = make_config(self.config_cls, self.base_config, **self.values())
        except ValueError as exc:
            self._say(str(exc), error=True)
            return None
        self._say("training…")
        self._set_running(True)
        try:
            with widget_events(from_click) as poll:
                return self._run(config, poll)
        finally:
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._stop = ""
        if running:
            self.progress_bar.value, self.progress.value = 0.0, "starting…"
        self.train_button.disabled = running
        self.stop_button.disabled = not running
        self.clear_button.disabled = self.best_button.disabled = running or not self.runs

    def _run(self, config: Any, poll: Poll) -> TrainResult | None:
        self.plot.outputs = ()
        self.live = plots.LivePlot(
            title=self.title, min_interval=self.live_interval, draw=self.draw, output=self.plot
        )
        settings, total = self.settings(), getattr(config, "total_steps", None)
        start = time.perf_counter()

        def follow(history: History) -> None:
            assert self.live is not None
            self.live(history)
            self._show_progress(history, total)
            poll(self.POLL_EVENTS)
            if self._stop == "asked":  # once: the trainer calls back again after it stopped
                self._stop = "sent"
                raise KeyboardInterrupt

        with self.output:
            self.output.clear_output()
            try:
                chosen = {name: control.value for name, control in self.choices.items()}
                result = self.train_fn(config, callback=follow, **chosen)
            except Exception:
                self._say("training failed: the error is shown below", error=True)
                raise  # in a kernel the output area shows the traceback and swallows it
            self._numbered += 1
            self.reference = self.reference or settings
            self.result = result
            run = Run(self._numbered, settings, result, time.perf_counter() - start)
            self.runs.append(run)
            self._say(result_summary(result, run.seconds, run.number))
            self.live.close(result.history)
            self._show_progress(result.history, total)
            self.progress.value = ended(run, total)
            self._show_comparison()
            return result
        return None  # reached only when a kernel's output area swallowed the error above

    def _show_progress(self, history: History, total_steps: int | None) -> None:
        self.progress_bar.value, self.progress.value = progress(history, total_steps)

    # -- the comparison ------------------------------------------------------------------------

    def compare(self) -> tuple[Figure | SubFigure, plots.Table]:
        """The comparison the panel shows: every run's learning curve in one figure, labelled
        with :meth:`Run.label`, and :func:`runs_table`."""
        if not self.runs:
            raise ValueError("there are no runs to compare yet: press Train")
        curves: dict[str, History | Sequence[History]] = {
            run.label(self.reference): run.history for run in self.runs
        }
        figure = plots.learning_curves(curves, title=f"{self.title or 'runs'}: every run")
        return figure, runs_table(self.runs, self.target, self.reference)

    def clear(self) -> None:
        """Forget every run (Clear runs); numbering goes on."""
        self.runs = []
        self._show_comparison()

    def keep_best(self) -> None:
        """Keep only :func:`best_run` (Keep best)."""
        if self.runs:
            self.runs = [best_run(self.runs, self.target)]
        self._show_comparison()

    def _show_comparison(self) -> None:
        self.clear_button.disabled = self.best_button.disabled = not self.runs
        if in_kernel():
            shown = self.compare() if self.runs else ()
            self.comparison.outputs = tuple(display_data(item) for item in shown)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.value = text
        self.status.style.text_color = "#b00020" if error else None
