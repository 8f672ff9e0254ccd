"""Tests for rlteach.rollout: autoreset handling in both modes, bootstrapping values, episode
statistics, seeding, Box actions, the flattening helper and evaluate()."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from rlteach.envs import make_vector_env
from rlteach.nets import ActorCritic
from rlteach.rollout import Batch, Collector, evaluate

PATHS = ["vector", "sync"]  # CartPole's NEXT_STEP vector entry point, SAME_STEP SyncVectorEnv
TENSOR_FIELDS = ["obs", "actions", "logp", "rewards", "values", "next_values"]
FLAG_FIELDS = ["terminated", "truncated", "valid"]


def cartpole_envs(path: str, num_envs: int = 3, limit: int | None = 5) -> gym.vector.VectorEnv:
    kwargs = {} if limit is None else {"max_episode_steps": limit}
    if path == "vector":
        return make_vector_env("CartPole-v1", num_envs, **kwargs)
    return make_vector_env(
        "CartPole-v1", num_envs, env_fn=lambda: gym.make("CartPole-v1", **kwargs)
    )


def collector_for(envs: gym.vector.VectorEnv, seed: int = 0, **policy_kwargs) -> Collector:
    torch.manual_seed(seed)
    policy = ActorCritic(
        envs.single_observation_space, envs.single_action_space, hidden=(16,), **policy_kwargs
    )
    return Collector(envs, policy, seed=seed)


def cartpole_physics_step(obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """The genuine next observation after each (obs, action) pair ``[..., 4]``, by replaying
    CartPole's dynamics in a separate single env started from that state."""
    env = CartPoleEnv()
    flat_obs, flat_actions = obs.reshape(-1, 4), action.reshape(-1)
    rows = []
    for state, a in zip(flat_obs, flat_actions, strict=True):
        env.state = state.astype(np.float64)
        rows.append(env.step(int(a))[0])
    return np.stack(rows).reshape(obs.shape)


def value_of(policy: ActorCritic, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return policy.value(torch.as_tensor(obs, dtype=torch.float32)).numpy()


@pytest.mark.parametrize("path", PATHS)
def test_next_values_are_values_of_the_genuine_next_observation(path):
    collector = collector_for(cartpole_envs(path))
    batch = collector.collect(17)
    obs, valid = batch.obs.numpy(), batch.valid.numpy()
    done = (batch.terminated | batch.truncated).numpy()
    real_next = cartpole_physics_step(obs, batch.actions.numpy())
    # The replay starts from the float32 observation while the env integrates in float64: the next
    # states differ by ~1e-7, so their values by far less than 1e-4.
    np.testing.assert_allclose(
        batch.next_values.numpy()[valid], value_of(collector.policy, real_next)[valid], atol=1e-4
    )
    # next_obs is that observation (what IMPALA's learner recomputes next_values from)
    np.testing.assert_allclose(batch.next_obs.numpy()[valid], real_next[valid], atol=1e-5)
    np.testing.assert_allclose(
        value_of(collector.policy, batch.next_obs.numpy()), batch.next_values.numpy(), atol=1e-6
    )
    # Consistency of consecutive rows: obs[t+1] is the real next observation except after a done
    # step in SAME_STEP mode (there it is the reset observation).
    follows = valid[:-1] & (~done[:-1] if path == "sync" else True)
    np.testing.assert_allclose(obs[1:][follows], real_next[:-1][follows], atol=1e-5)
    assert done.any()
    if path == "sync":  # the test is discriminating: the reset observation has another value
        after_done = done[:-1]
        reset_values = value_of(collector.policy, obs[1:][after_done])
        gap = np.abs(reset_values - batch.next_values.numpy()[:-1][after_done])
        assert gap.min() > 1e-3


@pytest.mark.parametrize("path, period", [("vector", 6), ("sync", 5)])
def test_truncation_flags_and_invalid_steps_follow_the_autoreset_mode(path, period):
    batch = collector_for(cartpole_envs(path, limit=5)).collect(20)
    # Plain loop: an episode is 5 valid steps, the 5th truncated; NEXT_STEP adds one reset step.
    expected_truncated = np.zeros((20, 3), dtype=bool)
    expected_valid = np.ones((20, 3), dtype=bool)
    for t in range(20):
        expected_truncated[t] = t % period == 4
        expected_valid[t] = t % period != 5
    assert np.array_equal(batch.truncated.numpy(), expected_truncated)
    assert np.array_equal(batch.valid.numpy(), expected_valid)
    assert not batch.terminated.any()  # 5 steps cannot topple the pole
    invalid = ~batch.valid
    assert (batch.rewards[invalid] == 0).all() and (batch.rewards[~invalid] == 1).all()
    if path == "vector":  # an invalid step comes exactly after each done step
        done = batch.terminated | batch.truncated
        assert torch.equal(batch.valid[1:], ~done[:-1])


def test_next_step_reset_step_crosses_the_batch_boundary():
    collector = collector_for(cartpole_envs("vector", limit=5))
    first, second = collector.collect(5), collector.collect(5)
    assert first.truncated[-1].all()
    assert not second.valid[0].any()
    # first.next_values[-1] bootstraps from the final observation, which is second.obs[0]
    np.testing.assert_allclose(
        first.next_values[-1].numpy(), value_of(collector.policy, second.obs[0].numpy()), atol=1e-6
    )
    assert first.env_steps == 15 and second.env_steps == 15 + 12


def episodes_by_plain_loop(batches: list[Batch]) -> tuple[list[float], list[int]]:
    """Per env, add up rewards of valid steps until terminated or truncated, over all batches."""
    rewards = torch.cat([b.rewards for b in batches]).double().numpy()
    valid = torch.cat([b.valid for b in batches]).numpy()
    done = torch.cat([b.terminated | b.truncated for b in batches]).numpy()
    totals, lengths = [0.0] * rewards.shape[1], [0] * rewards.shape[1]
    returns_out, lengths_out = [], []
    for t in range(rewards.shape[0]):
        for i in range(rewards.shape[1]):
            if valid[t, i]:
                totals[i] += rewards[t, i]
                lengths[i] += 1
            if done[t, i]:
                returns_out.append(totals[i])
                lengths_out.append(lengths[i])
                totals[i], lengths[i] = 0.0, 0
    return returns_out, lengths_out


@pytest.mark.parametrize(
    "make_envs",
    [
        lambda: cartpole_envs("vector", limit=None),
        lambda: cartpole_envs("sync", limit=None),
        lambda: make_vector_env(
            "Pendulum-v1", 2, env_fn=lambda: gym.make("Pendulum-v1", max_episode_steps=7)
        ),
    ],
    ids=["cartpole-vector", "cartpole-sync", "pendulum-sync"],
)
def test_episode_returns_and_lengths_are_sums_over_recorded_rewards(make_envs):
    collector = collector_for(make_envs())
    batches = [collector.collect(30), collector.collect(30)]
    returns, lengths = episodes_by_plain_loop(batches)
    assert len(returns) >= 4  # episodes end inside both batches and across the boundary
    recorded_returns = batches[0].episode_returns + batches[1].episode_returns
    # float32 rewards summed in float64 both ways; Pendulum rewards are ~-10 over 7 steps
    np.testing.assert_allclose(recorded_returns, returns, rtol=1e-6)
    assert batches[0].episode_lengths + batches[1].episode_lengths == lengths
    assert all(isinstance(r, float) for r in recorded_returns)


@pytest.mark.parametrize("path", PATHS)
def test_same_seed_gives_identical_batches(path):
    def batch(seed):
        return collector_for(cartpole_envs(path, limit=None), seed=seed).collect(25)

    first, second, other = batch(3), batch(3), batch(4)
    for name in TENSOR_FIELDS + FLAG_FIELDS:
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert first.episode_returns == second.episode_returns
    assert first.episode_lengths == second.episode_lengths
    assert not torch.equal(first.obs, other.obs)


class RecordActions(gym.Wrapper):
    """Remembers every action the env receives."""

    def __init__(self, env):
        super().__init__(env)
        self.received = []

    def step(self, action):
        self.received.append(np.array(action))
        return self.env.step(action)


def test_gaussian_policy_on_pendulum_stores_unclipped_actions_and_sends_clipped_ones():
    envs = make_vector_env("Pendulum-v1", 2, env_fn=lambda: RecordActions(gym.make("Pendulum-v1")))
    collector = collector_for(envs, log_std_init=1.0)  # σ ≈ 2.7, so many samples exceed ±2
    batch = collector.collect(40)
    assert batch.actions.shape == (40, 2, 1) and batch.actions.dtype == torch.float32
    assert batch.logp.shape == (40, 2) and batch.values.shape == (40, 2)
    assert batch.obs.shape == (40, 2, 3) and batch.obs.dtype == torch.float32
    actions = batch.actions.numpy()
    assert (np.abs(actions) > 2.0).any()
    received = np.stack([np.stack(env.received) for env in envs.envs], axis=1)
    np.testing.assert_array_equal(received, np.clip(actions, -2.0, 2.0))
    # logp is the log-density of the stored (unclipped) sample; float32 rounding only
    with torch.no_grad():
        expected = collector.policy.dist(batch.obs).log_prob(batch.actions)
    torch.testing.assert_close(batch.logp, expected, rtol=1e-5, atol=1e-5)


def test_batch_tensors_support_autograd_losses():
    collector = collector_for(cartpole_envs("vector"))
    batch = collector.collect(8)
    logp = collector.policy.dist(batch.obs).log_prob(batch.actions)
    loss = (
        -(logp * batch.rewards).mean()
        + (collector.policy.value(batch.obs) - batch.values).pow(2).mean()
    )
    loss.backward()  # raises if the batch held inference tensors


def test_flat_keeps_valid_samples_in_time_major_order():
    batch = collector_for(cartpole_envs("vector", limit=5)).collect(14)
    extra = torch.arange(14 * 3, dtype=torch.float32).reshape(14, 3)
    flat = batch.flat(adv=extra)
    rows = [(t, i) for t in range(14) for i in range(3) if batch.valid[t, i]]
    assert len(rows) < 14 * 3
    for name, full in [("obs", batch.obs), ("actions", batch.actions), ("adv", extra)]:
        assert torch.equal(flat[name], torch.stack([full[t, i] for t, i in rows])), name
    assert set(flat) == {"obs", "actions", "logp", "values", "adv"}
    with pytest.raises(ValueError, match="adv"):
        batch.flat(adv=extra[:-1])


def test_collector_rejects_bad_arguments():
    disabled = SyncVectorEnv(
        [lambda: gym.make("CartPole-v1")], autoreset_mode=AutoresetMode.DISABLED
    )
    with pytest.raises(ValueError, match="autoreset_mode"):
        collector_for(disabled)
    collector = collector_for(cartpole_envs("vector"))
    with pytest.raises(ValueError, match="num_steps"):
        collector.collect(0)


def push_left_policy() -> ActorCritic:
    env = gym.make("CartPole-v1")
    policy = ActorCritic(env.observation_space, env.action_space, hidden=(8,))
    with torch.no_grad():
        policy.actor.net[-1].weight.zero_()
        policy.actor.net[-1].bias.copy_(torch.tensor([20.0, -20.0]))
    return policy


def returns_by_hand(policy: ActorCritic, seeds: list[int]) -> list[float]:
    """One single env per episode, reset with its seed, greedy actions, plain loop."""
    returns = []
    for seed in seeds:
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = policy.deterministic_action(torch.as_tensor(obs)[None])[0]
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return returns


def test_evaluate_always_left_gives_short_real_episodes():
    policy = push_left_policy()
    returns = evaluate(policy, "CartPole-v1", episodes=20, seed=123)
    assert len(returns) == 20 and all(isinstance(r, float) for r in returns)
    assert all(8 <= r <= 11 for r in returns)
    assert returns == returns_by_hand(policy, list(range(123, 143)))
    sampled = evaluate(policy, "CartPole-v1", episodes=5, deterministic=False)
    assert all(8 <= r <= 11 for r in sampled)  # π(left) = 1 - e^-40: sampling changes nothing


def test_evaluate_is_reproducible_and_independent_of_the_number_of_envs():
    torch.manual_seed(1)
    env = gym.make("CartPole-v1")
    policy = ActorCritic(env.observation_space, env.action_space, hidden=(8,))
    many = evaluate(policy, "CartPole-v1", episodes=20, seed=5)  # 16 envs, two waves
    assert many == evaluate(policy, "CartPole-v1", episodes=20, seed=5)
    assert many[:3] == evaluate(policy, "CartPole-v1", episodes=3, seed=5)  # 3 envs
    assert many[16:18] == returns_by_hand(policy, [21, 22])  # second wave, episodes 16 and 17
    sampled = [
        evaluate(policy, "CartPole-v1", episodes=4, seed=9, deterministic=False) for _ in "ab"
    ]
    assert sampled[0] == sampled[1]


def test_evaluate_on_box_actions_and_bad_arguments():
    env = gym.make("Pendulum-v1")
    policy = ActorCritic(env.observation_space, env.action_space, hidden=(8,))
    returns = evaluate(policy, "Pendulum-v1", episodes=2)
    assert len(returns) == 2 and all(r < 0 for r in returns)  # Pendulum rewards are costs <= 0
    with pytest.raises(ValueError, match="episodes"):
        evaluate(policy, "Pendulum-v1", episodes=0)
    with pytest.raises(ValueError, match="'Pendulum-v9'"):
        evaluate(policy, "Pendulum-v9")


@pytest.mark.parametrize("path", PATHS)
def test_values_are_the_critics_values_of_each_recorded_observation(path):
    """The critic values the whole batch in one call at the end of a collection: values[t] is
    V(obs[t]) for every row, as a call on that row alone gives it."""
    collector = collector_for(cartpole_envs(path))
    batch = collector.collect(13)
    for t in range(13):
        np.testing.assert_allclose(
            batch.values.numpy()[t], value_of(collector.policy, batch.obs.numpy()[t]), atol=1e-6
        )
