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


# ----------------------------------------------------------------- one vector for the optimizer


def small_actor_critic(seed: int = 0) -> rlteach.ActorCritic:
    import gymnasium as gym

    torch.manual_seed(seed)
    return rlteach.ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), (8, 8))


def minibatch_loss(model: rlteach.ActorCritic, step: int) -> torch.Tensor:
    """A different actor-critic loss at every step (fresh data), scaled so that clipping acts."""
    generator = torch.Generator().manual_seed(100 + step)
    obs = torch.randn(16, 3, generator=generator)
    actions = torch.randint(0, 2, (16,), generator=generator)
    logp, entropy, values = model.evaluate_actions(obs, actions)
    return 30 * (-(logp * torch.randn(16, generator=generator)).mean() + values.square().mean())


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd"])
def test_an_optimizer_on_the_vector_parameter_steps_as_one_on_the_parameters(name):
    """gradient_step with the optimizer on vector_parameter(model) (one fused kernel, one norm)
    moves every weight as the same optimizer on model.parameters() does, clipping included; the
    model keeps its Parameters, and its state_dict and deepcopy hold the trained values."""
    import copy

    from rlteach.algos.a2c import make_optimizer
    from rlteach.algos.common import gradient_step, vector_parameter
    from rlteach.nets import flat_parameters

    vector_model, reference = small_actor_critic(), small_actor_critic()
    parameters = list(vector_model.parameters())
    theta = vector_parameter(vector_model)
    assert [id(p) for p in vector_model.parameters()] == [id(p) for p in parameters]
    vector_opt = make_optimizer(name, [theta], lr=1e-2)
    reference_opt = make_optimizer(name, reference.parameters(), lr=1e-2)
    norms = []
    for step in range(6):
        norm = gradient_step(vector_opt, minibatch_loss(vector_model, step), max_grad_norm=0.5)
        expected = gradient_step(reference_opt, minibatch_loss(reference, step), max_grad_norm=0.5)
        assert norm == pytest.approx(expected, rel=1e-5)
        norms.append(norm)
    assert min(norms) > 0.5  # every step was clipped
    np.testing.assert_allclose(flat_parameters(vector_model), theta.detach().numpy())
    np.testing.assert_allclose(
        flat_parameters(vector_model), flat_parameters(reference), rtol=1e-5, atol=1e-6
    )
    assert (
        np.abs(flat_parameters(vector_model) - flat_parameters(small_actor_critic())).max() > 1e-2
    )
    loaded = small_actor_critic(seed=1)
    loaded.load_state_dict(vector_model.state_dict())
    np.testing.assert_array_equal(flat_parameters(loaded), flat_parameters(vector_model))
    np.testing.assert_array_equal(
        flat_parameters(copy.deepcopy(vector_model)), flat_parameters(vector_model)
    )


def test_clipping_one_vector_is_torchs_clip_grad_norm():
    """clip_gradient on one vector: torch's rule (norm before clipping returned, the gradient
    scaled by min(1, max/(norm + 1e-6))), for a norm above the limit and one below it."""
    from rlteach.algos.common import clip_gradient

    generator = torch.Generator().manual_seed(0)
    for scale, limit in ((10.0, 0.5), (0.01, 0.5), (3.0, 0.0)):
        vector = torch.nn.Parameter(torch.zeros(50))
        vector.grad = scale * torch.randn(50, generator=generator)
        reference = torch.nn.Parameter(torch.zeros(50))
        reference.grad = vector.grad.clone()
        norm = clip_gradient([vector], limit)
        expected = torch.nn.utils.clip_grad_norm_([reference], limit or float("inf"))
        assert norm == pytest.approx(expected.item(), rel=1e-6)
        torch.testing.assert_close(vector.grad, reference.grad, rtol=1e-6, atol=0)


def test_shuffled_minibatches_are_the_index_pieces_of_minibatch_indices():
    """Slicing each epoch's shuffled batch gives exactly the samples that indexing by each piece
    of minibatch_indices gives, piece sizes included (chunk and tensor_split)."""
    from types import SimpleNamespace

    from rlteach.algos.ppo import minibatch_indices, shuffled_minibatches

    data = {"obs": torch.randn(37, 4), "adv": torch.randn(37)}
    for exact in (False, True):
        cfg = SimpleNamespace(epochs=3, minibatches=5)
        sliced = list(shuffled_minibatches(data, cfg, torch.Generator().manual_seed(4), exact))
        pieces = list(minibatch_indices(37, cfg, torch.Generator().manual_seed(4), exact))
        assert len(sliced) == len(pieces) == (15 if exact else 3 * len(torch.arange(37).chunk(5)))
        for minibatch, idx in zip(sliced, pieces, strict=True):
            for key, tensor in data.items():
                torch.testing.assert_close(minibatch[key], tensor[idx], rtol=0, atol=0)
