"""Config controls follow the fields' metadata; the training panel trains, reports and keeps runs."""

import math
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import pytest

from rlteach import plots, widgets
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
    """Fills a History in a loop, calling back after every update, like the real trainers."""

    def __init__(self, updates=5, interrupted=False):
        self.updates, self.interrupted, self.configs = updates, interrupted, []

    def __call__(self, config, callback=None):
        self.configs.append(config)
        history = History()
        for u in range(self.updates):
            history.log_update(env_steps=(u + 1) * 64, policy_objective=1.0 / (u + 1))
            history.log_episodes([10.0 * u, 10.0 * u + 4], [20, 24], env_steps=(u + 1) * 64)
            if callback is not None:
                callback(history)
        return FakeResult(None, history, config, self.interrupted)


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
    assert panel.status.value.endswith(" s") and "stopped early" not in panel.status.value
    assert isinstance(panel.live, plots.LivePlot) and panel.live.redraws >= 1
    panel.button.click()  # the button does the same, and runs accumulate for comparison
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
    assert panel.status.value.endswith("stopped early — partial result kept")


def test_a_failing_trainer_is_reported_and_its_error_raised_outside_a_kernel():
    def broken(config, callback=None):
        raise RuntimeError("boom")

    panel = widgets.TrainingPanel(broken, ToyConfig)
    with pytest.raises(RuntimeError, match="boom"):
        panel.train()
    assert panel.status.value.startswith("training failed")
    assert panel.result is None and not panel.button.disabled


def test_the_panel_tells_how_to_stop_a_run():
    panel = widgets.TrainingPanel(FakeTrainer(), ToyConfig, include=["lr"])
    texts = [c.value for c in panel.children if isinstance(c, W.HTML)]
    assert any("interrupt the kernel" in t for t in texts)
    assert "interrupt the kernel" in widgets.TrainingPanel.__doc__


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
