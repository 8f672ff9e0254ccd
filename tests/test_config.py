"""Configs are validated field by field with messages that name the field, value and range."""

import dataclasses
import functools

import pytest

from rlteach import A2CConfig, DA3CConfig, DPPOConfig, PPOConfig
from rlteach.config import fast_profile, make_config, pick, validate
from rlteach.distributed.configs import LaunchOptions
from rlteach.distributed.server import ServerConfig
from rlteach.registry import ALGORITHMS, algorithm_of


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


# ------------------------------------------------------------------ configs that cannot drift

ALGORITHM_CONFIGS = [algorithm.config_class() for algorithm in ALGORITHMS.values()]
# Fields whose help text says something different on purpose, because the field does.
MEANING_DIFFERS = {
    "normalize_advantages": "per batch (A2C, DA3C; REINFORCE's weights Ψ) or per minibatch "
    "(PPO, DPPO)",
    "rollout_steps": "REINFORCE goes on to each episode's end after its T steps",
}


def shared_fields() -> dict[str, list]:
    """Field name → its ``dataclasses.Field`` in every algorithm config that has it (≥ 2)."""
    seen: dict[str, list] = {}
    for cls in ALGORITHM_CONFIGS:
        for f in dataclasses.fields(cls):
            seen.setdefault(f.name, []).append(f)
    return {name: fs for name, fs in seen.items() if len(fs) > 1}


def test_fields_shared_between_configs_carry_the_same_metadata():
    """Each config keeps every field visible in its own dataclass; this test keeps the copies
    equal: the same type, range, choices and slider scale everywhere, and the same help text
    unless MEANING_DIFFERS says why not. Defaults may differ (each algorithm's tuning)."""
    shared = shared_fields()
    assert {"lr", "gamma", "rollout_steps", "hidden", "seed"} <= set(shared)
    for name, fs in shared.items():
        ranges = {repr({k: v for k, v in f.metadata.items() if k != "help"}) for f in fs}
        assert len(ranges) == 1, f"{name}: ranges differ between configs: {ranges}"
        assert len({type(f.default) for f in fs}) == 1, f"{name}: types differ"
        if name not in MEANING_DIFFERS:
            helps = {f.metadata["help"] for f in fs}
            assert len(helps) == 1, f"{name}: help texts differ: {helps}"


def test_every_meaning_that_differs_is_a_shared_field_whose_help_differs():
    shared = shared_fields()
    for name in MEANING_DIFFERS:
        assert len({f.metadata["help"] for f in shared[name]}) > 1, name


def test_rules_between_fields_go_through_the_one_validation_path():
    """``validate`` checks each field, then the config's own ``check()``: the CLI, the trainers
    and the widgets all reach the same rule."""
    with pytest.raises(ValueError, match="W − D must be >= 1"):
        validate(DPPOConfig(workers=2, drop_stragglers=2))
    with pytest.raises(ValueError, match="staleness = 2 needs average='gradients'"):
        make_config(DA3CConfig, staleness=2, average="parameters")
    with pytest.raises(ValueError, match="ServerConfig.drop_stragglers only applies"):
        validate(ServerConfig(mode="async", drop_stragglers=1))
    with pytest.raises(ValueError, match="ServerConfig.optimizer = 'rmsprop'"):
        ServerConfig(optimizer="rmsprop").validate(2)
    with pytest.raises(ValueError, match="LaunchOptions.preempt_fraction = 1.5"):
        make_config(LaunchOptions, preempt_fraction=1.5)


def test_the_registry_knows_each_trainer_also_behind_a_partial():
    ppo = ALGORITHMS["ppo"]
    assert algorithm_of(ppo.trainer_function()) is ppo
    assert algorithm_of(functools.partial(ppo.trainer_function(), lr=3e-4)) is ppo
    assert algorithm_of(print) is None and algorithm_of(lambda: None) is None
