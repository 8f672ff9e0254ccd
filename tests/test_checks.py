"""The exercise checkers pass correct solutions and explain what is wrong with incorrect ones."""

import numpy as np
import torch

from rlteach import checks


def correct_score(logits, action):
    score = -torch.softmax(logits, -1)
    score[action] += 1
    return score


def test_softmax_score_passes_a_correct_solution():
    result = checks.check_softmax_score(correct_score)
    assert result.passed and "agrees" in repr(result)


def test_softmax_score_names_the_difference_of_a_wrong_solution():
    result = checks.check_softmax_score(lambda logits, a: torch.softmax(logits, -1))
    assert not result.passed
    assert "expected" in result.message and "largest difference" in result.message


def test_rewards_to_go_passes_a_loop_and_rejects_a_missing_discount():
    def loop(rewards, gamma):
        return [
            sum(gamma ** (k - t) * rewards[k] for k in range(t, len(rewards)))
            for t in range(len(rewards))
        ]

    assert checks.check_rewards_to_go(loop)
    undiscounted = checks.check_rewards_to_go(lambda r, g: np.cumsum(r[::-1])[::-1])
    assert not undiscounted and "case" in undiscounted.message


def test_placeholder_counts_as_not_attempted_and_wrong_shape_and_crash_are_reported():
    def placeholder(rewards, gamma):
        raise NotImplementedError

    assert "not attempted" in checks.check_rewards_to_go(placeholder).message
    assert "shape" in checks.check_rewards_to_go(lambda r, g: np.zeros(len(r) + 1)).message
    crashed = checks.check_rewards_to_go(lambda r, g: 1 / 0)
    assert "ZeroDivisionError" in crashed.message
    assert "not yet" in crashed._repr_html_()


def gae_loop(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Plain loop, one env at a time, written from the definition (not the library's recursion)."""
    T, N = rewards.shape
    adv = torch.zeros(T, N, dtype=torch.float64)
    for i in range(N):
        for t in range(T):
            total, weight, k = 0.0, 1.0, t
            while True:
                bootstrap = 0.0 if terminated[k, i] else gamma * next_values[k, i]
                total += weight * (rewards[k, i] + bootstrap - values[k, i])
                if terminated[k, i] or truncated[k, i] or k == T - 1:
                    break
                weight *= gamma * lam
                k += 1
            adv[t, i] = total
    return adv


def test_gae_check_passes_a_loop_and_catches_a_trace_that_crosses_truncations():
    assert checks.check_gae(gae_loop)

    def ignores_truncation(rewards, values, next_values, terminated, truncated, gamma, lam):
        return gae_loop(
            rewards, values, next_values, terminated, torch.zeros_like(truncated), gamma, lam
        )

    assert not checks.check_gae(ignores_truncation)


def test_td_residual_check_catches_bootstrapping_after_termination():
    def right(r, v, nv, term, gamma):
        return r + gamma * nv * (~term) - v

    assert checks.check_td_residuals(right)
    assert not checks.check_td_residuals(lambda r, v, nv, term, gamma: r + gamma * nv - v)


def test_ppo_clip_check_compares_value_and_gradient():
    def per_sample_loop(logp_new, logp_old, adv, eps):
        terms = []
        for new, old, a in zip(logp_new, logp_old, adv, strict=True):
            r = torch.exp(new - old)
            terms.append(torch.minimum(r * a, torch.clamp(r, 1 - eps, 1 + eps) * a))
        return torch.stack(terms).mean()

    assert checks.check_ppo_clip_objective(per_sample_loop)

    def clipped_without_min(logp_new, logp_old, adv, eps):
        return (torch.clamp(torch.exp(logp_new - logp_old), 1 - eps, 1 + eps) * adv).mean()

    assert not checks.check_ppo_clip_objective(clipped_without_min)


def test_reinforce_loss_check_wants_a_loss_to_minimise():
    assert checks.check_reinforce_loss(lambda logp, ret: -(logp * ret).mean())
    assert not checks.check_reinforce_loss(lambda logp, ret: (logp * ret).mean())


def test_discounted_returns_check_wants_the_sum_to_stop_at_episode_ends():
    def loop(rewards, dones, gamma):
        out, running = np.zeros(len(rewards)), 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + (0.0 if dones[t] else gamma * running)
            out[t] = running
        return out

    assert checks.check_discounted_returns(loop)
    assert not checks.check_discounted_returns(lambda r, d, g: loop(r, np.zeros_like(d), g))


def test_approx_kl_check():
    assert checks.check_approx_kl(lambda new, old: ((new - old).exp() - 1 - (new - old)).mean())
    assert not checks.check_approx_kl(lambda new, old: (old - new).mean())
