"""Tests for rlteach.envs: the vector env factory, its two paths, and its input checks."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from rlteach.envs import autoreset_mode, make_env, make_vector_env, registered_spec


def test_cartpole_uses_its_vector_entry_point_with_next_step_autoreset():
    envs = make_vector_env("CartPole-v1", 3, seed=0)
    assert not isinstance(envs, SyncVectorEnv)
    assert envs.num_envs == 3
    assert autoreset_mode(envs) is AutoresetMode.NEXT_STEP
    assert envs.single_action_space == gym.spaces.Discrete(2)


def test_env_without_vector_entry_point_falls_back_to_same_step_sync():
    envs = make_vector_env("Pendulum-v1", 2)
    assert isinstance(envs, SyncVectorEnv)
    assert autoreset_mode(envs) is AutoresetMode.SAME_STEP


def test_env_fn_forces_the_sync_path_and_is_used():
    made = []

    def env_fn():
        made.append(gym.make("CartPole-v1", max_episode_steps=3))
        return made[-1]

    envs = make_vector_env("CartPole-v1", 2, env_fn=env_fn)
    assert isinstance(envs, SyncVectorEnv)
    assert autoreset_mode(envs) is AutoresetMode.SAME_STEP
    assert len(made) == 2 and envs.envs == made


@pytest.mark.parametrize("env_fn", [None, lambda: gym.make("CartPole-v1", max_episode_steps=5)])
def test_episode_limit_reaches_either_path(env_fn):
    kwargs = {"max_episode_steps": 5} if env_fn is None else {}
    envs = make_vector_env("CartPole-v1", 2, seed=0, env_fn=env_fn, **kwargs)
    envs.reset(seed=0)
    truncated_at = [envs.step(np.zeros(2, dtype=np.int64))[3].all() for _ in range(5)]
    # pushing left does not topple the pole within 5 steps (it takes ~9), so only the limit ends it
    assert truncated_at == [False] * 4 + [True]


def test_same_seed_gives_the_same_trajectory():
    def trajectory():
        envs = make_vector_env("CartPole-v1", 4, seed=7)
        return np.stack([envs.step(np.ones(4, dtype=np.int64))[0] for _ in range(3)])

    assert np.array_equal(trajectory(), trajectory())


@pytest.mark.parametrize("make", [make_env, lambda env_id: make_vector_env(env_id, 2)])
def test_unknown_env_id_raises_value_error_naming_it(make):
    with pytest.raises(ValueError, match="'CartPol-v1'") as info:
        make("CartPol-v1")
    assert "CartPole-v1" in str(info.value)  # a close match is suggested


def test_unversioned_or_non_string_ids_are_rejected():
    with pytest.raises(ValueError, match="'CartPole'"):
        registered_spec("CartPole")
    with pytest.raises(ValueError, match="env_id"):
        registered_spec(3)
    with pytest.raises(ValueError, match="no_such_module_xyz"):
        registered_spec("no_such_module_xyz:Foo-v0")


@pytest.mark.parametrize("num_envs", [0, -1, 2.0])
def test_bad_num_envs(num_envs):
    with pytest.raises(ValueError, match="num_envs"):
        make_vector_env("CartPole-v1", num_envs)


def test_env_kwargs_with_env_fn_is_an_error():
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_vector_env(
            "CartPole-v1", 2, env_fn=lambda: gym.make("CartPole-v1"), max_episode_steps=5
        )


def test_make_env_passes_keywords_to_gymnasium():
    env = make_env("CartPole-v1", max_episode_steps=7)
    assert env.spec.max_episode_steps == 7
    assert env.observation_space.shape == (4,)
