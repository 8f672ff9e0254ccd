"""Configs are validated field by field with messages that name the field, value and range."""

import pytest

from rlteach import A2CConfig, PPOConfig
from rlteach.config import fast_profile, make_config, pick


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("clip_eps", 0.0, r"in \(0.0, 1.0\)"),
        ("clip_eps", 1.5, r"in \(0.0, 1.0\)"),
        ("gamma", -0.1, r"in \[0.0, 1.0\]"),
        ("num_envs", 0, r"in \[1, 256\]"),
        ("lr", 0.0, r"in \(0.0, 1.0\]"),
        ("epochs", 2.5, "of type int"),
        ("anneal_lr", 1, "of type bool"),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_is_allowed(field, value, allowed):
    with pytest.raises(
        ValueError, match=rf"PPOConfig\.{field} = {value!r} is invalid: must be {allowed}"
    ):
        make_config(PPOConfig, **{field: value})


def test_choices_are_listed_and_unknown_fields_rejected():
    with pytest.raises(ValueError, match="one of 'td', 'nstep', 'gae'"):
        make_config(A2CConfig, advantage="mc")
    with pytest.raises(ValueError, match="unknown PPOConfig field"):
        make_config(PPOConfig, learning_rate=1e-3)


def test_overrides_apply_on_top_of_a_base_config():
    base = PPOConfig(epochs=3)
    cfg = make_config(PPOConfig, base, lr=5e-4)
    assert (cfg.epochs, cfg.lr) == (3, 5e-4)
    with pytest.raises(ValueError, match="config must be a PPOConfig"):
        make_config(PPOConfig, A2CConfig())


def test_fast_profile_follows_the_environment_variable(monkeypatch):
    monkeypatch.setenv("RLTEACH_FAST", "1")
    assert fast_profile() and pick(100, 1) == 1
    monkeypatch.setenv("RLTEACH_FAST", "0")
    assert not fast_profile() and pick(100, 1) == 100
