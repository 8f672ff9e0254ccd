"""REINFORCE's three choices of Ψ (notebook 02, eq. 2.3), checked against plain loops on a
hand-made batch that has a termination, a time-limit truncation and episodes cut by the batch end,
and its collection of complete episodes, checked on real CartPole batches."""

from functools import partial
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlteach
from rlteach.algos.reinforce import (
    BASELINES,
    actor_gradient,
    collect_batches,
    collect_complete_episodes,
    critic_share,
    cross_half_cosine,
    gradient_agreement,
    mean_pairwise_cosine,
    reinforce_loss,
    reinforce_weights,
)
from rlteach.envs import make_env, make_vector_env
from rlteach.rollout import Collector

GAMMA = 0.9
# float64 throughout: the loops below and the library sum the same numbers in a different order,
# so they agree to rounding, ~1e-15 relative; 1e-12 leaves room and still catches any wrong term.
TOL = dict(rtol=1e-12, atol=1e-12)


def hand_made_batch():
    """T = 6 steps of N = 3 envs.

    env 0: terminates after step 1; a new episode runs to the batch end (cut after step 5).
    env 1: truncated by a time limit after step 2 (its final observation's value 7.0 differs from
           values[3], the next episode's first state); terminates after step 4; one more step.
    env 2: one episode through the whole batch, cut by the batch end.
    """
    rng = np.random.default_rng(0)
    T, N = 6, 3
    rewards = torch.from_numpy(rng.uniform(-1, 2, (T, N)))
    values = torch.from_numpy(rng.uniform(0, 5, (T, N)))
    next_values = torch.cat([values[1:], torch.from_numpy(rng.uniform(0, 5, (1, N)))])
    next_values[2, 1] = 7.0  # V of the final observation of env 1's truncated episode
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    terminated[1, 0] = terminated[4, 1] = True
    truncated[2, 1] = True
    return SimpleNamespace(
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminated=terminated,
        truncated=truncated,
    )


def forward_returns(b, gamma):
    """G_t summed forward, one (t, env) at a time, to the end of t's episode inside the batch:
    G_t = Σ_{k=t..e} γ^{k−t} r_k + γ^{e−t+1} V(s_{e+1}) unless step e terminated."""
    T, N = b.rewards.shape
    G = torch.zeros(T, N, dtype=torch.float64)
    for i in range(N):
        for t in range(T):
            total, k = 0.0, t
            while True:
                total += gamma ** (k - t) * float(b.rewards[k, i])
                if b.terminated[k, i]:
                    break
                if b.truncated[k, i] or k == T - 1:
                    total += gamma ** (k - t + 1) * float(b.next_values[k, i])
                    break
                k += 1
            G[t, i] = total
    return G


def test_hand_made_batch_has_every_kind_of_episode_end():
    b = hand_made_batch()
    assert b.terminated.any() and b.truncated.any()
    assert not (b.terminated[-1] | b.truncated[-1]).all()  # some episode runs into the batch end


def test_monte_carlo_weights_are_returns_to_go_minus_the_critic():
    b = hand_made_batch()
    psi, target = reinforce_weights(b, "monte-carlo", GAMMA)
    expected = forward_returns(b, GAMMA)
    torch.testing.assert_close(target, expected, **TOL)
    torch.testing.assert_close(psi, expected - b.values, **TOL)


def test_no_baseline_weights_are_the_returns_to_go():
    b = hand_made_batch()
    psi, target = reinforce_weights(b, "none", GAMMA)
    expected = forward_returns(b, GAMMA)
    torch.testing.assert_close(psi, expected, **TOL)
    torch.testing.assert_close(target, expected, **TOL)


def test_truncation_is_bootstrapped_and_termination_is_not():
    """The cases by hand: env 1 step 2 (truncated) and env 0 step 1 (terminated)."""
    b = hand_made_batch()
    _, G = reinforce_weights(b, "none", GAMMA)
    assert G[2, 1].item() == pytest.approx(b.rewards[2, 1].item() + GAMMA * 7.0, rel=1e-12)
    assert G[1, 0].item() == pytest.approx(b.rewards[1, 0].item(), rel=1e-12)


def test_bootstrap_weights_are_td_errors():
    b = hand_made_batch()
    psi, target = reinforce_weights(b, "bootstrap", GAMMA)
    T, N = b.rewards.shape
    delta = torch.zeros(T, N, dtype=torch.float64)
    for t in range(T):
        for i in range(N):
            tail = 0.0 if b.terminated[t, i] else GAMMA * float(b.next_values[t, i])
            delta[t, i] = float(b.rewards[t, i]) + tail - float(b.values[t, i])
    torch.testing.assert_close(psi, delta, **TOL)
    torch.testing.assert_close(target, delta + b.values, **TOL)


def test_actor_loss_gradient_is_minus_the_weighted_score():
    """Autograd of reinforce_loss against −mean[∇ log π(a|s) Ψ] written by hand."""
    torch.manual_seed(0)
    env = make_env("CartPole-v1")
    policy = rlteach.ActorCritic(env.observation_space, env.action_space)
    M = 16
    data = {"obs": torch.randn(M, 4), "actions": torch.randint(0, 2, (M,)), "psi": torch.randn(M)}
    cfg = rlteach.ReinforceConfig(normalize_advantages=False)
    loss, _ = reinforce_loss(policy, data, cfg)
    by_hand = -(policy.dist(data["obs"]).log_prob(data["actions"]) * data["psi"]).mean()
    params = list(policy.actor.parameters())
    for g, h in zip(
        torch.autograd.grad(loss, params), torch.autograd.grad(by_hand, params), strict=True
    ):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-6)  # float32 sums in another order


@pytest.mark.parametrize("baseline", BASELINES)
def test_every_baseline_trains_the_critic_and_runs(baseline):
    result = rlteach.train_reinforce(total_steps=2048, seed=0, baseline=baseline)
    assert np.isfinite(result.history.column("value_loss", "updates")).all()


def test_baseline_must_be_one_of_the_choices():
    with pytest.raises(ValueError, match="ReinforceConfig.baseline"):
        rlteach.train_reinforce(baseline=True)
    with pytest.raises(ValueError, match="ReinforceConfig.baseline"):
        rlteach.train_reinforce(baseline="critic")


def test_extra_critic_steps_move_the_critic_and_leave_the_actor_alone():
    """One batch (total_steps=1), same seed: the actor's step is identical, so only the critic's
    steps can make a difference — and they must not move the actor."""
    one, many = (
        rlteach.train_reinforce(total_steps=1, num_envs=2, rollout_steps=32, critic_steps=k)
        for k in (1, 5)
    )
    for p, q in zip(one.policy.actor.parameters(), many.policy.actor.parameters(), strict=True):
        assert torch.equal(p, q)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(
            one.policy.critic.parameters(), many.policy.critic.parameters(), strict=True
        )
    )


def test_the_actor_step_does_not_shrink_with_the_critic_loss():
    """Separate clips: scaling the value loss by 1000 changes the critic's gradient norm, not the
    actor's step (with one shared clip of 0.5 the actor's step would shrink)."""
    small, large = (
        rlteach.train_reinforce(total_steps=1, num_envs=2, rollout_steps=32, vf_coef=c)
        for c in (0.5, 500.0)
    )
    for p, q in zip(small.policy.actor.parameters(), large.policy.actor.parameters(), strict=True):
        assert torch.equal(p, q)


def test_mean_pairwise_cosine_matches_a_double_loop():
    vectors = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = vectors.numpy()
    cosines = [
        v[i] @ v[j] / (np.linalg.norm(v[i]) * np.linalg.norm(v[j]))
        for i in range(5)
        for j in range(5)
        if i != j
    ]
    assert mean_pairwise_cosine(vectors) == pytest.approx(np.mean(cosines), rel=1e-12)
    assert mean_pairwise_cosine(torch.ones(3, 4)) == pytest.approx(1.0)


def test_actor_gradient_is_the_mean_of_per_sample_scores_times_standardised_weights():
    """(2.2) one sample at a time: autograd of each log π(a_m|s_m) alone, times Ψ̃_m, averaged."""
    cfg = rlteach.ReinforceConfig(num_envs=2, rollout_steps=24, seed=3)
    agent = rlteach.train_reinforce(cfg, total_steps=1).policy
    batch = Collector(make_vector_env("CartPole-v1", 2), agent, seed=3).collect(24)
    psi = batch.flat(psi=reinforce_weights(batch, "monte-carlo", cfg.gamma)[0])["psi"].double()
    weights = (psi - psi.mean()) / psi.std(correction=0)
    data = batch.flat()
    params = list(agent.actor.parameters())
    total = 0
    for m in range(len(weights)):
        logp = agent.dist(data["obs"][m]).log_prob(data["actions"][m])
        score = torch.cat([g.flatten() for g in torch.autograd.grad(logp, params)])
        total = total + score.double() * weights[m]
    expected = total / len(weights)
    got = actor_gradient(agent, batch, "monte-carlo", cfg).double()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)  # float32 network


def test_gradient_agreement_with_a_zero_critic_cannot_tell_none_from_monte_carlo():
    """With V_w ≡ 0, G_t − V_w(s_t) = G_t: the two rows must be identical."""
    cfg = rlteach.ReinforceConfig(num_envs=2, rollout_steps=64)
    policy = rlteach.train_reinforce(cfg, total_steps=1).policy
    with torch.no_grad():
        for p in policy.critic.net[-1].parameters():
            p.zero_()
    result = gradient_agreement(policy, cfg, collect_batches(policy, cfg, 4))
    assert result["none"] == pytest.approx(result["monte-carlo"])


def test_cross_half_cosine_pairs_different_halves():
    rows = torch.randn(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    other = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def cos(u, v):
        return float(u @ v / (u.norm() * v.norm()))

    expected = (
        cos(rows[:3].mean(0), other[3:].mean(0)) + cos(rows[3:].mean(0), other[:3].mean(0))
    ) / 2
    assert cross_half_cosine(rows, other) == pytest.approx(expected, rel=1e-12)


def test_critic_share_matches_a_loop_over_the_hand_made_batch():
    """tail_t = γ^{e+1−t} V(s_{e+1}) if t's episode is cut at e (truncation or batch end), else 0."""
    b = hand_made_batch()
    b.valid = torch.ones_like(b.terminated)
    b.flat = partial(lambda self, **extra: {k: v.flatten() for k, v in extra.items()}, b)
    T, N = b.rewards.shape
    tails, cut = (torch.zeros(T, N, dtype=torch.float64) for _ in range(2))
    for i in range(N):
        for t in range(T):
            k = t
            while not (b.terminated[k, i] or b.truncated[k, i] or k == T - 1):
                k += 1
            if not b.terminated[k, i]:
                tails[t, i], cut[t, i] = GAMMA ** (k - t + 1) * float(b.next_values[k, i]), 1
    got = critic_share([b], GAMMA)
    assert got["samples"] == pytest.approx(float(cut.mean()), rel=1e-12)
    expected_share = (tails / forward_returns(b, GAMMA)).mean().item()
    assert got["share"] == pytest.approx(expected_share, rel=1e-12)


def complete_episode_batches(same_step: bool, count=3):
    """``count`` batches of T = 16 steps of 4 CartPole envs with a 15-step time limit (so there
    are truncations), by an untrained policy, in either autoreset mode."""
    limit = dict(max_episode_steps=15)
    env_fn = partial(gym.make, "CartPole-v1", **limit) if same_step else None
    envs = make_vector_env("CartPole-v1", 4, env_fn=env_fn, **({} if same_step else limit))
    torch.manual_seed(0)
    policy = rlteach.ActorCritic(envs.single_observation_space, envs.single_action_space)
    collector = Collector(envs, policy, seed=0)
    batches = [collect_complete_episodes(collector, 16) for _ in range(count)]
    envs.close()
    return batches, collector


@pytest.mark.parametrize("same_step", [False, True])
def test_complete_episodes_end_every_env_at_an_episode_end(same_step):
    batches, collector = complete_episode_batches(same_step)
    assert any(b.truncated.any() for b in batches) and any(b.terminated.any() for b in batches)
    for b in batches:
        assert len(b.valid) >= 16
        ends = b.terminated | b.truncated
        for i in range(b.valid.shape[1]):
            last = int(torch.nonzero(b.valid[:, i]).max())
            assert ends[last, i]  # the last valid step of every env ends an episode
            assert not (b.terminated | b.truncated | (b.rewards != 0))[~b.valid].any()
    # env_steps counts the valid steps only, across batches
    valid_counts = np.cumsum([int(b.valid.sum()) for b in batches])
    assert [b.env_steps for b in batches] == valid_counts.tolist()
    assert collector.env_steps == valid_counts[-1]
    # each reported episode is one that ends on a valid step of this batch
    for b in batches:
        assert len(b.episode_returns) == int((b.terminated | b.truncated).sum())


@pytest.mark.parametrize("same_step", [False, True])
def test_every_batch_of_complete_episodes_starts_with_fresh_episodes(same_step):
    """After a batch the envs restart, so in the next batch every env's first episode begins at
    row 0: its reported length is the number of valid steps up to its first end, and the first
    observations are reset states (CartPole resets every coordinate within ±0.05)."""
    batches, _ = complete_episode_batches(same_step)
    for b in batches[1:]:
        assert (b.obs[0].abs() <= 0.05).all()
        ends = b.terminated | b.truncated
        first_lengths = []
        for i in range(b.valid.shape[1]):
            first_end = int(torch.nonzero(ends[:, i]).min())
            first_lengths.append(int(b.valid[: first_end + 1, i].sum()))
        rows_of_ends = [(int(t), int(i)) for t, i in torch.nonzero(ends)]
        reported = dict(zip(rows_of_ends, b.episode_lengths, strict=True))
        for i, length in enumerate(first_lengths):
            first_end = min(t for t, j in rows_of_ends if j == i)
            assert reported[(first_end, i)] == length


@pytest.mark.parametrize("same_step", [False, True])
def test_complete_episode_returns_are_plain_monte_carlo_sums(same_step):
    """On valid steps, G_t summed forward never reaches the batch end: it stops at a termination
    (adds 0) or at a truncation (adds γ V_w(s_final))."""
    for b in complete_episode_batches(same_step)[0]:
        b64 = SimpleNamespace(
            **{k: getattr(b, k).double() for k in ("rewards", "values", "next_values")},
            terminated=b.terminated,
            truncated=b.truncated,
        )
        G = reinforce_weights(b64, "none", GAMMA)[0]
        torch.testing.assert_close(G[b.valid], forward_returns(b64, GAMMA)[b.valid], **TOL)
        # no valid step's episode runs into the last row without ending there
        last = b.valid[-1] & ~(b.terminated[-1] | b.truncated[-1])
        assert not last.any()


def test_seed_summary_reports_each_seeds_last_returns_and_the_final_entropy():
    from rlteach import plots
    from rlteach.history import History

    histories = []
    for returns, entropy in [([1, 2, 3, 10, 20], 0.5), ([4, 5, 6, 30, 40], 0.1)]:
        h = History()
        h.log_episodes(returns, [1] * len(returns), env_steps=5)
        h.log_update(env_steps=5, entropy=0.9)
        h.log_update(env_steps=10, entropy=entropy)
        histories.append(h)
    table = plots.seed_summary({"arm": histories}, last=2)
    # last two returns: seed 0 → 15, seed 1 → 35; mean 25; entropy of the last update 0.3 on average
    assert table.rows == [["arm", "15, 35", "25", "15–35", "0.3"]]
