"""Tests for rlteach.nets: MLP init, policies, ActorCritic shapes, fast acting, save/restore."""

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlteach.nets import (
    ActorCritic,
    CategoricalPolicy,
    GaussianPolicy,
    ValueFunction,
    alias_gradients,
    alias_parameters,
    flat_gradient,
    flat_parameters,
    mlp,
    set_flat_parameters,
)

OBS_SPACE = gym.spaces.Box(-1.0, 1.0, (3,))
DISCRETE = gym.spaces.Discrete(4)
BOX = gym.spaces.Box(-2.0, 2.0, (2,))

# Chi-square critical value for 3 degrees of freedom (4 categories) at significance 0.001:
# a correct sampler exceeds it with probability 0.001 (and the generator is seeded, so the test is
# deterministic).
CHI2_DF3_P001 = 16.27


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def assert_orthogonal_with_gain(layer: nn.Linear, gain: float) -> None:
    # W = gain · (orthogonal rows or columns): every singular value equals gain. float32 QR and SVD
    # are accurate to ~1e-6 relative; 1e-4 relative leaves a wide margin.
    singular_values = torch.linalg.svdvals(layer.weight.detach())
    torch.testing.assert_close(
        singular_values, torch.full_like(singular_values, gain), rtol=1e-4, atol=0.0
    )
    assert torch.count_nonzero(layer.bias) == 0


def test_mlp_shapes_activations_and_init_gains():
    net = mlp([5, 7, 3, 2], activation=nn.ReLU, output_gain=0.01)
    layers = linear_layers(net)
    assert [(m.in_features, m.out_features) for m in layers] == [(5, 7), (7, 3), (3, 2)]
    assert sum(isinstance(m, nn.ReLU) for m in net) == 2
    assert not isinstance(net[-1], nn.ReLU)
    for layer, gain in zip(layers, [math.sqrt(2), math.sqrt(2), 0.01], strict=True):
        assert_orthogonal_with_gain(layer, gain)
    assert net(torch.zeros(6, 4, 5)).shape == (6, 4, 2)


@pytest.mark.parametrize("sizes", [[4], [], [4, 0, 2], [4, 2.5]])
def test_mlp_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        mlp(sizes)


def test_actor_critic_heads_have_documented_gains():
    discrete = ActorCritic(OBS_SPACE, DISCRETE, hidden=(16, 8))
    box = ActorCritic(OBS_SPACE, BOX, hidden=(16, 8), log_std_init=-0.5)
    for model in (discrete, box):
        actor, critic = linear_layers(model.actor), linear_layers(model.critic)
        for layer in actor[:-1] + critic[:-1]:
            assert_orthogonal_with_gain(layer, math.sqrt(2))
        assert_orthogonal_with_gain(actor[-1], 0.01)
        assert_orthogonal_with_gain(critic[-1], 1.0)
    torch.testing.assert_close(box.actor.log_std.detach(), torch.full((2,), -0.5))
    # separate networks: no parameter is shared between actor and critic
    actor_ids = {id(p) for p in discrete.actor.parameters()}
    assert actor_ids.isdisjoint(id(p) for p in discrete.critic.parameters())


@pytest.mark.parametrize("act_space, action_shape", [(DISCRETE, (5, 3)), (BOX, (5, 3, 2))])
def test_actor_critic_shapes_time_major(act_space, action_shape):
    model = ActorCritic(OBS_SPACE, act_space)
    obs = torch.randn(5, 3, 3)  # [T, N, obs_dim]
    dist = model.dist(obs)
    action = dist.sample()
    assert action.shape == action_shape
    assert dist.log_prob(action).shape == (5, 3)
    assert dist.entropy().shape == (5, 3)
    assert model.value(obs).shape == (5, 3)
    act_action, logp, value = model.act(obs[0])
    assert act_action.shape == action_shape[1:]
    assert logp.shape == value.shape == (3,)
    assert not (logp.requires_grad or value.requires_grad)
    assert model.deterministic_action(obs[0]).shape == action_shape[1:]


@pytest.mark.parametrize(
    "obs_space, act_space",
    [
        (OBS_SPACE, gym.spaces.MultiDiscrete([2, 3])),
        (gym.spaces.Discrete(5), DISCRETE),
        (gym.spaces.Box(0, 1, (2, 2)), DISCRETE),
        (OBS_SPACE, gym.spaces.Box(-1, 1, (2, 2))),
    ],
)
def test_actor_critic_rejects_unsupported_spaces(obs_space, act_space):
    with pytest.raises(ValueError, match="space"):
        ActorCritic(obs_space, act_space)


def test_actor_critic_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        ActorCritic(OBS_SPACE, DISCRETE, activation="gelu")


def sharpened_categorical() -> ActorCritic:
    """A categorical ActorCritic whose action probabilities are far from uniform and differ."""
    torch.manual_seed(0)
    model = ActorCritic(OBS_SPACE, DISCRETE, hidden=(8,))
    with torch.no_grad():
        model.actor.net[-1].weight.mul_(100.0)
        model.actor.net[-1].bias.copy_(torch.tensor([0.0, 0.5, 1.0, -0.5]))
    return model


def test_categorical_fast_logp_equals_distribution_log_prob():
    model = sharpened_categorical()
    obs = torch.randn(64, 3)
    action, logp, value = model.act(obs, torch.Generator().manual_seed(1))
    # log_softmax+gather vs Categorical's logits-logsumexp+gather: equal up to float32 rounding
    torch.testing.assert_close(logp, model.dist(obs).log_prob(action))
    torch.testing.assert_close(value, model.value(obs))


def test_categorical_fast_sampling_has_the_policy_distribution():
    model = sharpened_categorical()
    obs = torch.randn(1, 3)
    probs = model.dist(obs).probs[0]
    assert probs.min() > 0.02 and (probs.max() - probs.min()) > 0.1  # a non-trivial target
    n = 20_000
    actions, _, _ = model.act(obs.expand(n, 3), torch.Generator().manual_seed(2))
    counts = torch.bincount(actions, minlength=4).double()
    expected = n * probs.double()
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < CHI2_DF3_P001, (counts, expected)


def test_categorical_sampling_is_reproducible_with_a_generator():
    model = sharpened_categorical()
    obs = torch.randn(100, 3)
    first = model.act(obs, torch.Generator().manual_seed(5))[0]
    second = model.act(obs, torch.Generator().manual_seed(5))[0]
    assert torch.equal(first, second)


def gaussian_model() -> ActorCritic:
    torch.manual_seed(0)
    model = ActorCritic(OBS_SPACE, BOX, hidden=(8,))
    with torch.no_grad():
        model.actor.log_std.copy_(torch.tensor([-0.5, 0.3]))
        model.actor.mean_net[-1].weight.mul_(100.0)
    return model


def test_gaussian_log_prob_is_summed_over_action_dims():
    model = gaussian_model()
    obs, action = torch.randn(4, 3), torch.randn(4, 2)
    mean = model.actor.mean_net(obs)
    std = model.actor.log_std.exp()
    # independent computation: product of 1-D normal densities, written out in float64
    density = torch.exp(-((action - mean).double() ** 2) / (2 * std.double() ** 2)) / (
        std.double() * math.sqrt(2 * math.pi)
    )
    expected = density.prod(dim=-1).log().float()
    # float32 vs float64 evaluation of the same formula: rounding ~1e-6 relative
    torch.testing.assert_close(model.dist(obs).log_prob(action), expected, rtol=1e-5, atol=1e-5)


def test_gaussian_fast_path_logp_and_moments_match_distribution():
    model = gaussian_model()
    obs = torch.randn(1, 3)
    n = 20_000
    actions, logp, _ = model.act(obs.expand(n, 3), torch.Generator().manual_seed(3))
    dist = model.dist(obs)
    # closed form on ε vs Normal.log_prob on (a - μ)/σ: same formula, float32 rounding only
    torch.testing.assert_close(logp, dist.log_prob(actions), rtol=1e-5, atol=1e-5)
    mean, std = dist.mean[0].detach(), dist.stddev[0].detach()
    # standard errors: σ/√n for the sample mean, ≈σ/√(2n) for the sample std; allow 5 of them
    assert ((actions.mean(0) - mean).abs() < 5 * std / math.sqrt(n)).all()
    assert ((actions.std(0) - std).abs() < 5 * std / math.sqrt(2 * n)).all()


def test_deterministic_action_is_argmax_or_mean():
    obs = torch.randn(32, 3)
    categorical = sharpened_categorical()
    expected = categorical.dist(obs).probs.argmax(-1)
    assert torch.equal(categorical.deterministic_action(obs), expected)
    gaussian = gaussian_model()
    torch.testing.assert_close(gaussian.deterministic_action(obs), gaussian.dist(obs).mean)


@pytest.mark.parametrize("act_space", [DISCRETE, BOX])
def test_spec_and_state_dict_round_trip_with_weights_only_load(act_space):
    model = ActorCritic(OBS_SPACE, act_space, hidden=(16, 8), activation="relu", log_std_init=0.2)
    buffer = io.BytesIO()
    torch.save({"spec": model.spec(), "state_dict": model.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    restored = ActorCritic.from_spec(checkpoint["spec"])
    restored.load_state_dict(checkpoint["state_dict"])
    assert restored.spec() == model.spec()
    obs = torch.randn(10, 3)
    action = model.dist(obs).sample()
    assert torch.equal(restored.dist(obs).log_prob(action), model.dist(obs).log_prob(action))
    assert torch.equal(restored.value(obs), model.value(obs))


def test_from_spec_rejects_unknown_action_kind():
    spec = ActorCritic(OBS_SPACE, DISCRETE).spec() | {"action_kind": "multi"}
    with pytest.raises(ValueError, match="action_kind"):
        ActorCritic.from_spec(spec)


def test_building_blocks_work_on_their_own():
    obs = torch.randn(2, 5, 3)
    assert CategoricalPolicy(3, 4).dist(obs).batch_shape == (2, 5)
    assert GaussianPolicy(3, 2).dist(obs).event_shape == (2,)
    assert ValueFunction(3).forward(obs).shape == (2, 5)
    assert np.isclose(GaussianPolicy(3, 2, log_std_init=0.7).log_std.detach().numpy(), 0.7).all()


def test_evaluate_actions_matches_the_distribution_objects():
    """The fast path the losses use gives dist(obs).log_prob / .entropy exactly, with gradients."""
    import gymnasium as gym

    from rlteach.nets import ActorCritic

    torch.manual_seed(0)
    obs = torch.randn(32, 3)
    for space, actions in [
        (gym.spaces.Discrete(4), torch.randint(0, 4, (32,))),
        (gym.spaces.Box(-2.0, 2.0, (2,)), torch.randn(32, 2)),
    ]:
        model = ActorCritic(gym.spaces.Box(-1.0, 1.0, (3,)), space, log_std_init=-0.3)
        logp, entropy, value = model.evaluate_actions(obs, actions)
        dist = model.dist(obs)
        torch.testing.assert_close(logp, dist.log_prob(actions))
        torch.testing.assert_close(entropy, dist.entropy())
        torch.testing.assert_close(value, model.value(obs))
        (grad_fast,) = torch.autograd.grad(logp.sum(), next(model.actor.parameters()))
        (grad_dist,) = torch.autograd.grad(
            dist.log_prob(actions).sum(), next(model.actor.parameters())
        )
        torch.testing.assert_close(grad_fast, grad_dist)


def test_set_flat_parameters_copies_and_does_not_alias_the_vector():
    """Loading θ must copy it: a later optimizer step on the model may not write into the caller's
    vector (a worker keeps pulled vectors, e.g. to compute θ' − θ_pulled)."""
    model = torch.nn.Linear(3, 2)
    theta = np.arange(8, dtype=np.float32)
    set_flat_parameters(model, theta)
    np.testing.assert_array_equal(flat_parameters(model), theta)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(theta, np.arange(8, dtype=np.float32))
    np.testing.assert_array_equal(flat_parameters(model), theta + 1)


def actor_critic_loss(model, obs):
    """A scalar touching every parameter of an ActorCritic: the critic's values and the actor's
    log-probabilities of action 0."""
    return model.value(obs).sum() + model.dist(obs).log_prob(torch.zeros(len(obs))).sum()


def test_aliased_parameters_load_a_written_theta_and_keep_their_values():
    model = ActorCritic(OBS_SPACE, DISCRETE, (8, 8))
    before = flat_parameters(model)
    flat = alias_parameters(model)
    np.testing.assert_array_equal(flat, before)  # aliasing changes no value
    theta = np.random.default_rng(0).standard_normal(flat.size).astype(np.float32)
    np.copyto(flat, theta)  # one copy into the vector ...
    np.testing.assert_array_equal(flat_parameters(model), theta)  # ... is θ loaded in the model
    reference = ActorCritic(OBS_SPACE, DISCRETE, (8, 8))
    set_flat_parameters(reference, theta)
    obs = torch.randn(5, 3)
    torch.testing.assert_close(model.value(obs), reference.value(obs), rtol=0, atol=0)


def test_aliased_gradients_are_the_flat_gradient_without_a_copy():
    """backward() writes into the aliased vector, and zeroing with set_to_none=False keeps the
    alias: two backward passes in a row each leave exactly the gradient of their own loss."""
    model = ActorCritic(OBS_SPACE, DISCRETE, (8, 8))
    grads = np.full(flat_parameters(model).size, np.nan, dtype=np.float32)
    alias_gradients(model, grads)
    reference = ActorCritic(OBS_SPACE, DISCRETE, (8, 8))
    set_flat_parameters(reference, flat_parameters(model))
    for seed in (1, 2):
        obs = torch.randn(6, 3, generator=torch.Generator().manual_seed(seed))
        model.zero_grad(set_to_none=False)
        actor_critic_loss(model, obs).backward()
        reference.zero_grad(set_to_none=True)
        actor_critic_loss(reference, obs).backward()
        np.testing.assert_array_equal(grads, flat_gradient(reference))


def test_alias_gradients_refuses_a_vector_of_the_wrong_size_or_type():
    model = ActorCritic(OBS_SPACE, DISCRETE, (8, 8))
    size = flat_parameters(model).size
    with pytest.raises(ValueError, match="one entry per parameter"):
        alias_gradients(model, np.zeros(size + 1, np.float32))
    with pytest.raises(ValueError, match="float32"):
        alias_gradients(model, np.zeros(size, np.float64))
