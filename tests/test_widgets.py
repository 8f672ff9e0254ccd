"""Config controls follow the fields' metadata; the training panel trains, reports and keeps runs."""

import math
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import pytest

from rlteach import panel as training_panel
from rlteach import plots, widgets
from rlteach.algos.common import Interruptible, last_callback
from rlteach.config import make_config, setting
from rlteach.history import History


@dataclass(frozen=True)
class ToyConfig:
    lr: float = setting(3e-4, low=1e-5, high=1e-1, log=True, help="learning rate")
    gamma: float = setting(0.99, low=0.0, high=1.0, help="discount factor")
    n_steps: int = setting(128, low=8, high=1024, help="steps per env per update")
    total_steps: int = setting(2_000, low=1, help="environment steps in all")
    clip_eps: float = setting(0.2, low=0.0, help="PPO clip range")
    env_id: str = setting("CartPole-v1", choices=("CartPole-v1", "Acrobot-v1"), help="task")
    workers: int = setting(2, choices=(1, 2, 4), help="processes")
    normalize: bool = setting(True, help="normalise advantages")
    run_name: str = setting("toy", help="label")
    hidden: tuple = setting((64, 64), help="layer sizes")


@dataclass
class FakeResult:
    policy: object
    history: History
    config: ToyConfig
    interrupted: bool = False


class FakeTrainer:
    """Fills a History in a loop, calling back after every update, like the real trainers: a
    KeyboardInterrupt ends the loop and the result is partial, and the callback is called once
    more at the end (as the distributed trainers do)."""

    def __init__(self, updates=5, interrupted=False, gain=10.0):
        self.updates, self.interrupted, self.gain, self.configs = updates, interrupted, gain, []

    def __call__(self, config, callback=None):
        self.configs.append(config)
        history = History()
        with Interruptible() as run:
            for u in range(self.updates):
                steps = (u + 1) * 64
                history.log_update(env_steps=steps, policy_objective=1.0 / (u + 1))
                history.log_episodes([self.gain * u, self.gain * u + 4], [20, 24], env_steps=steps)
                if callback is not None:
                    callback(history)
        last_callback(callback, history)
        return FakeResult(None, history, config, self.interrupted or run.interrupted)


def test_each_field_gets_the_widget_its_metadata_asks_for():
    controls = widgets.config_controls(ToyConfig)
    kinds = {name: type(c) for name, c in controls.items()}
    assert kinds == {
        "lr": W.FloatLogSlider,
        "gamma": W.FloatSlider,
        "n_steps": W.IntSlider,
        "total_steps": W.IntText,
        "clip_eps": W.FloatText,
        "env_id": W.Dropdown,
        "workers": W.Dropdown,
        "normalize": W.Checkbox,
        "run_name": W.Text,
    }  # the tuple field has no control
    for name in ("lr", "gamma", "n_steps"):
        assert controls[name].continuous_update is False
    assert controls["env_id"].tooltip == "task" and controls["gamma"].description == "gamma"


def test_ranges_and_values_come_from_the_metadata():
    controls = widgets.config_controls(ToyConfig, config=ToyConfig(gamma=0.9))
    lr = controls["lr"]
    # log sliders hold exponents: 10**min = low and 10**max = high (to float rounding)
    assert (10**lr.min, 10**lr.max) == (pytest.approx(1e-5), pytest.approx(1e-1))
    assert lr.value == pytest.approx(3e-4)
    assert (controls["gamma"].min, controls["gamma"].max, controls["gamma"].value) == (0, 1, 0.9)
    assert (controls["n_steps"].min, controls["n_steps"].max) == (8, 1024)
    assert list(controls["env_id"].options) == [("CartPole-v1",) * 2, ("Acrobot-v1",) * 2]
    assert list(controls["workers"].options) == [("1", 1), ("2", 2), ("4", 4)]  # (label, value)
    assert controls["workers"].value == 2


def test_include_selects_and_orders_fields_and_rejects_unknown_or_unsupported_ones():
    assert list(widgets.config_controls(ToyConfig, include=["gamma", "lr"])) == ["gamma", "lr"]
    with pytest.raises(ValueError, match="gama not a field of ToyConfig"):
        widgets.config_controls(ToyConfig, include=["gama"])
    with pytest.raises(ValueError, match=r"ToyConfig.hidden = \(64, 64\) gets no control"):
        widgets.config_controls(ToyConfig, include=["hidden"])
    with pytest.raises(ValueError, match="config_cls = 3"):
        widgets.config_controls(3)


def test_train_runs_the_trainer_with_the_controls_values_and_keeps_the_result():
    trainer = FakeTrainer(updates=5)
    panel = widgets.TrainingPanel(trainer, ToyConfig, include=["gamma", "total_steps"], title="t")
    panel.controls["gamma"].value = 0.5
    result = panel.train()
    assert trainer.configs == [make_config(ToyConfig, gamma=0.5)]
    assert panel.result is result and panel.results == [result]
    returns = [row["return"] for row in result.history.episodes]
    assert panel.status.value.startswith(
        f"run 1: 10 episodes · last-20 mean return {np.mean(returns[-20:]):.1f} · "
    )
    assert panel.status.value.endswith(" s") and "stopped" not in panel.status.value
    assert isinstance(panel.live, plots.LivePlot) and panel.live.redraws >= 1
    panel.train_button.click()  # the button does the same, and runs accumulate for comparison
    assert len(panel.results) == 2 and panel.result is panel.results[1]
    assert panel.status.value.startswith("run 2: ")


def test_the_live_plot_draws_into_the_panels_own_plot_area_which_each_run_clears():
    panel = widgets.TrainingPanel(FakeTrainer(updates=2), ToyConfig)
    panel.plot.outputs = ({"output_type": "stream", "name": "stdout", "text": "old run"},)
    panel.train()
    assert panel.live.output is panel.plot and panel.plot in panel.children
    assert panel.plot.outputs == ()  # outside a kernel nothing is shown, and the old plot is gone


def test_an_invalid_value_is_reported_in_the_status_line_and_nothing_trains():
    trainer = FakeTrainer()
    panel = widgets.TrainingPanel(trainer, ToyConfig)
    panel.controls["total_steps"].value = 0
    assert panel.train() is None
    with pytest.raises(ValueError) as expected:
        make_config(ToyConfig, total_steps=0)
    assert panel.status.value == str(expected.value)
    assert trainer.configs == [] and panel.result is None and panel.results == []


def test_an_interrupted_run_keeps_the_partial_result_and_says_so():
    panel = widgets.TrainingPanel(FakeTrainer(updates=2, interrupted=True), ToyConfig)
    result = panel.train()
    assert panel.result is result and result.interrupted
    assert panel.status.value.endswith("stopped — partial result kept")


def test_a_failing_trainer_is_reported_and_its_error_raised_outside_a_kernel():
    def broken(config, callback=None):
        raise RuntimeError("boom")

    panel = widgets.TrainingPanel(broken, ToyConfig)
    with pytest.raises(RuntimeError, match="boom"):
        panel.train()
    assert panel.status.value.startswith("training failed")
    assert panel.result is None and not panel.train_button.disabled


def test_the_panel_tells_how_to_stop_a_run():
    panel = widgets.TrainingPanel(FakeTrainer(), ToyConfig, include=["lr"])
    texts = [c.value for c in panel.children if isinstance(c, W.HTML)]
    assert any("Stop ends the run" in t and "■" in t for t in texts)


def test_a_log_field_with_an_open_or_zero_end_spans_three_decades_around_its_value():
    @dataclass
    class Open:
        lr: float = setting(1e-3, low=0.0, low_inclusive=False, log=True)

    slider = widgets.config_controls(Open)["lr"]
    assert (slider.min, slider.max) == (pytest.approx(-6), pytest.approx(0))
    assert math.isclose(slider.value, 1e-3)


def test_choices_offer_keyword_arguments_of_the_trainer_that_are_not_config_fields():
    calls = []

    def trainer(config, callback=None, backend="local"):
        calls.append(backend)
        return FakeTrainer(updates=1)(config, callback=callback)

    backends = ("local", "ray", "torchrun")
    panel = widgets.TrainingPanel(trainer, ToyConfig, include=["lr"], choices={"backend": backends})
    dropdown = panel.choices["backend"]
    assert isinstance(dropdown, W.Dropdown) and tuple(dropdown.options) == backends
    assert dropdown.value == "local" and dropdown in panel.children[0].children
    panel.train()
    dropdown.value = "torchrun"
    panel.train()
    assert calls == ["local", "torchrun"] and "backend" not in panel.values()


# ---------------------------------------------------------------------------------------------
# Stop, progress, and the runs side by side


class StopAfter(FakeTrainer):
    """A trainer whose ``clicks``-th callback is preceded by a click on the panel's Stop button,
    as a student's click is handled at the start of the panel's callback."""

    def __init__(self, clicks, **kwargs):
        super().__init__(**kwargs)
        self.clicks, self.panel, self.seen = clicks, None, []

    def __call__(self, config, callback=None):
        def click_then_follow(history):
            self.seen.append((self.panel.stop_button.disabled, self.panel.train_button.disabled))
            if len(history.updates) == self.clicks:
                self.panel.stop_button.click()
            callback(history)

        return super().__call__(config, callback=click_then_follow)


def test_stop_ends_the_run_at_the_end_of_the_update_and_keeps_the_partial_result():
    trainer = StopAfter(clicks=3, updates=50)
    panel = widgets.TrainingPanel(trainer, ToyConfig)
    trainer.panel = panel
    result = panel.train()
    assert result.interrupted and len(result.history.updates) == 3
    assert panel.runs[0].result is result  # kept for the comparison
    assert panel.status.value.endswith("stopped — partial result kept")
    assert panel.progress.value.startswith("stopped at 192 / 2,000 env steps, after ")
    # while it ran, Stop was enabled and Train disabled; afterwards the other way round
    assert trainer.seen[0] == (False, True)
    assert panel.stop_button.disabled and not panel.train_button.disabled
    # the trainer's last callback, after it stopped, did not raise again: the next run is whole
    trainer.clicks = None
    assert not panel.train().interrupted


def test_a_stop_handled_after_the_last_update_leaves_the_finished_run_whole():
    """The distributed trainers call back once more after their loop; a Stop handled there comes
    too late to cut anything, and the run is kept as it finished."""
    calls = []

    class ClickAfterTheLoop(FakeTrainer):
        def __call__(self, config, callback=None):
            def follow(history):
                calls.append(len(history.updates))
                if len(calls) == self.updates + 1:  # the call after the loop
                    panel.stop_button.click()
                callback(history)

            return super().__call__(config, callback=follow)

    panel = widgets.TrainingPanel(ClickAfterTheLoop(updates=4), ToyConfig)
    result = panel.train()
    assert calls == [1, 2, 3, 4, 4] and not result.interrupted
    assert panel.runs[0].result is result and "stopped" not in panel.status.value
    assert panel.progress.value.startswith("done: 256 env steps in ")


def test_stop_does_nothing_when_no_run_is_running():
    panel = widgets.TrainingPanel(FakeTrainer(updates=4), ToyConfig)
    panel.stop()  # the button is disabled; a call does nothing either
    assert not panel.train().interrupted and panel.status.value.startswith("run 1:")


def test_progress_shows_steps_rate_and_time_left_while_training():
    seen = []

    class Watched(FakeTrainer):
        def __call__(self, config, callback=None):
            def follow(history):
                callback(history)
                seen.append((panel.progress_bar.value, panel.progress.value))

            return super().__call__(config, callback=follow)

    panel = widgets.TrainingPanel(Watched(updates=5), ToyConfig)  # total_steps 2,000
    panel.train()
    fraction, text = seen[0]
    assert fraction == pytest.approx(64 / 2_000)
    assert text.startswith("64 / 2,000 env steps · ") and "steps/s" in text
    assert [f for f, _ in seen[:5]] == pytest.approx([64 * k / 2_000 for k in range(1, 6)])


def test_progress_measures_the_rate_between_the_first_and_the_last_update():
    history = History()
    for steps, t in ((100, 5.0), (1_100, 6.0), (2_100, 7.0)):  # 5 s of start-up, then 1,000/s
        history.log_update(env_steps=steps, wall_time=t)
    fraction, text = training_panel.progress(history, 10_100)
    assert fraction == pytest.approx(2_100 / 10_100)
    assert text == "2,100 / 10,100 env steps · 1,000 steps/s · about 8 s left"


def test_each_run_is_kept_and_labelled_by_the_settings_that_differ_from_the_first():
    panel = widgets.TrainingPanel(FakeTrainer(updates=30), ToyConfig, include=["gamma", "lr"])
    panel.train()
    panel.controls["gamma"].value = 0.5
    panel.train()
    panel.controls["gamma"].value = 0.99  # back to run 1's settings
    panel.train()
    first = panel.runs[0]
    labels = [run.label(panel.reference) for run in panel.runs]
    assert panel.reference == first.settings == {"gamma": 0.99, "lr": 3e-4}
    assert labels == ["run 1", "run 2: gamma = 0.5", "run 3: same settings"]
    figure, table = panel.compare()
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == labels
    assert [row[0] for row in table.rows] == labels and len(table.rows) == 3
    assert table.headers == [
        "run",
        "env steps",
        "seconds",
        "last-20 mean training return",
        "env steps until last-20 mean ≥ 475",
        "ended",
    ]  # ToyConfig's env is CartPole-v1: gymnasium's threshold is 475
    assert table.rows[0][1] == "1,920" and table.rows[0][-1] == "finished"


def test_the_table_gives_steps_to_the_target_and_which_runs_were_stopped():
    history = History()
    history.log_update(env_steps=64)
    history.log_episodes([500.0] * 20, [500] * 20, env_steps=64)
    reached = training_panel.Run(1, {"lr": 1e-3}, FakeResult(None, history, None), 2.0)
    stopped = training_panel.Run(2, {"lr": 1e-2}, FakeResult(None, History(), None, True), 1.0)
    table = training_panel.runs_table([reached, stopped], 475.0, reached.settings)
    assert table.rows == [
        ["run 1", "64", "2.0", "500.0", "64", "finished"],
        ["run 2: lr = 0.01", "0", "1.0", "no episode yet", "not reached", "stopped"],
    ]
    headers = training_panel.runs_table([reached], None, reached.settings).headers
    assert not any("475" in h for h in headers)


def test_clear_and_keep_best_act_on_the_runs_and_numbering_goes_on():
    trainers = {"weak": FakeTrainer(updates=30, gain=1.0), "strong": FakeTrainer(updates=30)}
    chosen = {"trainer": "weak"}

    def trainer(config, callback=None):
        return trainers[chosen["trainer"]](config, callback=callback)

    panel = widgets.TrainingPanel(trainer, ToyConfig, include=["lr"])
    assert panel.clear_button.disabled and panel.best_button.disabled  # no runs yet
    panel.train()
    chosen["trainer"] = "strong"
    panel.train()
    chosen["trainer"] = "weak"
    panel.train()
    assert not panel.best_button.disabled
    panel.best_button.click()
    assert [run.number for run in panel.runs] == [2]  # the highest last-20 mean return
    panel.clear_button.click()
    assert panel.runs == [] and panel.results == [] and panel.clear_button.disabled
    panel.train()
    assert [run.number for run in panel.runs] == [4]
    assert panel.runs[0].label(panel.reference) == "run 4: same settings"  # still against run 1
    with pytest.raises(ValueError, match="no runs"):
        training_panel.best_run([])
