"""The single-process trainers: they learn, they are reproducible, they stop cleanly."""

import numpy as np
import pytest
import torch

import rlteach


def greedy_mean(result, episodes=20):
    return float(
        np.mean(rlteach.evaluate(result.policy, "CartPole-v1", episodes=episodes, seed=123))
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_default_config_solves_cartpole_within_100k_steps(seed):
    """The issue's bar: greedy mean >= 475 over 20 episodes after the default 100k env steps."""
    result = rlteach.train_ppo(seed=seed)
    assert result.config.total_steps == 100_000 and not result.interrupted
    assert result.history.updates[-1]["env_steps"] < 100_000 + 8 * 64  # one batch of overshoot
    assert greedy_mean(result) >= 475
    # what a student watches (rlteach.show_episode): the greedy policy lasts to the time limit
    assert rlteach.show_episode(result.policy, "CartPole-v1", seed=0).length == 500


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a2c_default_config_solves_cartpole_within_300k_steps(seed):
    result = rlteach.train_a2c(seed=seed)
    assert result.config.total_steps == 300_000
    assert greedy_mean(result) >= 475


@pytest.mark.slow
def test_reinforce_with_a_baseline_learns_cartpole():
    """A random policy lasts ~20 steps; REINFORCE must bring the greedy policy past 300."""
    before = rlteach.train_reinforce(total_steps=1)
    result = rlteach.train_reinforce(seed=0)
    assert greedy_mean(before) < 100 < 300 < greedy_mean(result)


@pytest.mark.parametrize("train", [rlteach.train_ppo, rlteach.train_a2c, rlteach.train_reinforce])
def test_same_seed_same_run(train):
    a, b = (train(total_steps=3000, seed=7) for _ in range(2))
    c = train(total_steps=3000, seed=8)
    assert a.history.column("return").tolist() == b.history.column("return").tolist()
    for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    assert a.history.column("return").tolist() != c.history.column("return").tolist()


def test_callback_runs_after_every_update_and_an_interrupt_keeps_the_partial_result():
    seen = []

    def stop_after_three(history):
        seen.append(len(history.updates))
        if len(history.updates) == 3:
            raise KeyboardInterrupt

    result = rlteach.train_ppo(total_steps=100_000, callback=stop_after_three)
    assert seen == [1, 2, 3]
    assert result.interrupted and len(result.history.updates) == 3
    assert "interrupted" in repr(result)
    rlteach.evaluate(result.policy, "CartPole-v1", episodes=2)  # the partial policy is usable


def test_ppo_runs_on_continuous_actions():
    result = rlteach.train_ppo(env_id="Pendulum-v1", total_steps=2048, num_envs=2)
    assert result.policy.action_kind == "box" and result.history.episodes
    assert np.isfinite(result.history.column("value_loss", "updates")).all()


def test_a2c_advantage_estimators_all_run():
    for name in ("td", "nstep", "gae"):
        result = rlteach.train_a2c(total_steps=400, advantage=name)
        assert np.isfinite(result.history.column("policy_objective", "updates")).all()


def test_bad_arguments_raise_before_anything_starts():
    with pytest.raises(ValueError, match="PPOConfig.clip_eps"):
        rlteach.train_ppo(clip_eps=-0.1)
    with pytest.raises(ValueError, match="CartPol-v1"):
        rlteach.train_a2c(env_id="CartPol-v1")


@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_combined_loss_has_the_gradient_of_the_written_out_loss(ent_coef):
    """``−J + c_v L^V − c_e H̄``: the same value and gradient as the expression written out, and
    with ``c_e = 0`` backward does not reach the entropy at all (the term is out of the graph)."""
    from types import SimpleNamespace

    from rlteach.algos.common import combined_loss

    cfg = SimpleNamespace(vf_coef=0.5, ent_coef=ent_coef)
    generator = torch.Generator().manual_seed(0)
    objective, value_loss = (torch.randn((), generator=generator, requires_grad=True) for _ in "ov")
    entropy = torch.rand(7, generator=generator, requires_grad=True)
    loss, stats = combined_loss(objective, value_loss, entropy, cfg)
    loss.backward()
    expected = -objective + 0.5 * value_loss - ent_coef * entropy.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert objective.grad.item() == -1.0 and value_loss.grad.item() == 0.5
    if ent_coef:
        torch.testing.assert_close(entropy.grad, torch.full((7,), -ent_coef / 7))
    else:
        assert entropy.grad is None
    assert stats == pytest.approx(
        {
            "policy_objective": objective.item(),
            "value_loss": value_loss.item(),
            "entropy": entropy.mean().item(),
        }
    )
