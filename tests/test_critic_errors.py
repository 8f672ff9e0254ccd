"""Notebook 03, section 2: GAE as a mixture of n-step advantages, and the exact bias and variance of
advantage targets under the kinds of critic error the notebook compares."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlteach import advantages, plots, tabular, widgets

GAMMA = 0.9


def random_batch(T=9, N=4, seed=0):
    """float64 rewards, values, next_values [T, N] of one uninterrupted stretch per column:
    next_values[t] = values[t+1] inside the batch, a free bootstrap value after its last step."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64)
    values = torch.randn(T + 1, N, generator=g, dtype=torch.float64)
    return rewards, values[:-1], values[1:]


def nstep_advantage_loop(rewards, values, next_values, gamma, n, t, i):
    """Â^(n)_t of column i by a plain loop: m = min(n, T − t) rewards, then γ^m V(s_{t+m})."""
    m = min(n, len(rewards) - t)
    total = sum(gamma**k * rewards[t + k, i].item() for k in range(m))
    return total + gamma**m * next_values[t + m - 1, i].item() - values[t, i].item()


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9, 1.0])
def test_gae_is_the_finite_lambda_mixture_of_nstep_advantages(lam):
    """Â^GAE_t = Σ_{n<m} (1−λ)λ^{n−1} Â^(n)_t + λ^{m−1} Â^(m)_t with m = T − t (eq. 3.2b).
    Both sides are sums of at most T ≈ 10 float64 terms of size ~1: rounding error ~1e-15."""
    rewards, values, next_values = random_batch()
    T, N = rewards.shape
    no_end = torch.zeros_like(rewards, dtype=torch.bool)
    gae, _ = advantages.gae(rewards, values, next_values, no_end, no_end, GAMMA, lam)
    for t in range(T):
        m = T - t
        weights = [(1 - lam) * lam ** (n - 1) for n in range(1, m)] + [lam ** (m - 1)]
        for i in range(N):
            mixture = sum(
                w * nstep_advantage_loop(rewards, values, next_values, GAMMA, n, t, i)
                for n, w in enumerate(weights, start=1)
            )
            assert gae[t, i].item() == pytest.approx(mixture, abs=1e-10)
    mixture = advantages.nstep_mixture(rewards, values, next_values, GAMMA, lam)
    assert torch.allclose(mixture, gae, rtol=0, atol=1e-10)


def test_lambda_weights_are_the_geometric_weights_with_the_tail_folded_in():
    weights = advantages.lambda_weights(0.6, 5)
    expected = [0.4, 0.4 * 0.6, 0.4 * 0.6**2, 0.4 * 0.6**3, 0.6**4]
    assert weights.tolist() == pytest.approx(expected, abs=1e-15)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-15)
    assert advantages.lambda_weights(0.0, 3).tolist() == [1.0, 0.0, 0.0]
    assert advantages.lambda_weights(1.0, 3).tolist() == [0.0, 0.0, 1.0]


def test_the_mixture_needs_consistent_bootstrap_values():
    """With next_values[t] ≠ values[t+1] the n-step sums no longer telescope: the identity fails,
    so the test above can fail."""
    rewards, values, next_values = random_batch()
    no_end = torch.zeros_like(rewards, dtype=torch.bool)
    gae, _ = advantages.gae(rewards, values, next_values + 1.0, no_end, no_end, GAMMA, 0.5)
    mixture = advantages.nstep_mixture(rewards, values, next_values + 1.0, GAMMA, 0.5)
    assert (gae - mixture).abs().max() > 0.1


@pytest.fixture
def mdp_theta():
    mdp = tabular.random_mdp(6, 3, 0.95, seed=1)
    theta = torch.from_numpy(0.3 * np.random.default_rng(2).normal(size=(6, 3)))
    return mdp, theta


def test_critic_errors_have_the_requested_kind_and_root_mean_square_size(mdp_theta):
    mdp, theta = mdp_theta
    V = tabular.state_values(mdp, theta)
    for kind in tabular.CRITIC_ERRORS:
        error = tabular.critic_with_error(mdp, theta, kind, 0.7) - V
        assert error.pow(2).mean().sqrt().item() == pytest.approx(0.7, abs=1e-12)
    assert torch.allclose(tabular.critic_with_error(mdp, theta, "offset", 0.7), V + 0.7)
    shrink = 1 - 0.7 / V.pow(2).mean().sqrt()
    assert torch.allclose(tabular.critic_with_error(mdp, theta, "shrunk", 0.7), shrink * V)
    with pytest.raises(ValueError, match="kind"):
        tabular.critic_with_error(mdp, theta, "typo", 0.7)


def test_an_offset_critic_biases_the_td_error_by_exactly_gamma_minus_one_times_c(mdp_theta):
    """V̂ = V^π + c: E[δ | s, a] = R + γ P V̂ − V̂(s) = Q^π(s, a) − V^π(s) + (γ − 1) c, exactly."""
    mdp, theta = mdp_theta
    c = 1.3
    critic = tabular.critic_with_error(mdp, theta, "offset", c)
    mean_td = mdp.R + mdp.gamma * mdp.P @ critic - critic[:, None]
    advantage = tabular.action_values(mdp, theta) - tabular.state_values(mdp, theta)[:, None]
    assert torch.allclose(mean_td - advantage, torch.full_like(advantage, (mdp.gamma - 1) * c))


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
def test_an_offset_critic_gives_the_closed_form_bias_and_leaves_the_variance(mdp_theta, lam):
    """V̂ = V^π + c shifts every λ-return by Σ_k γ^{k+1}(1−λ)λ^k c = γ(1−λ)c / (1−γλ), a constant:
    bias² is its square and the variance is that of the exact critic (linear solves: ~1e-12)."""
    mdp, theta = mdp_theta
    c, g = 1.3, mdp.gamma
    exact = tabular.state_values(mdp, theta)
    offset = tabular.critic_with_error(mdp, theta, "offset", c)
    est = {"gae": ("gae", lam)}
    stats = tabular.exact_estimator_errors(mdp, theta, offset, est)["gae"]
    reference = tabular.exact_estimator_errors(mdp, theta, exact, est)["gae"]
    assert stats["bias2"] == pytest.approx((g * (1 - lam) * c / (1 - g * lam)) ** 2, abs=1e-10)
    assert stats["variance"] == pytest.approx(reference["variance"], abs=1e-10)


def test_an_exact_critic_gives_unbiased_targets_for_every_lambda_and_n(mdp_theta):
    mdp, theta = mdp_theta
    V = tabular.state_values(mdp, theta)
    est = {lam: ("gae", lam) for lam in (0.0, 0.5, 1.0)} | {n: ("nstep", n) for n in (1, 3, 30)}
    for stats in tabular.exact_estimator_errors(mdp, theta, V, est).values():
        assert stats["bias2"] < 1e-20
    # and λ = 1 never reads the critic: the same moments whatever V̂
    noisy = tabular.critic_with_error(mdp, theta, "noise", 2.0)
    for a, b in zip(
        tabular.lambda_return_moments(mdp, theta, V, 1.0),
        tabular.lambda_return_moments(mdp, theta, noisy, 1.0),
        strict=True,
    ):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("estimator", [("gae", 0.0), ("gae", 0.7), ("nstep", 3)])
@pytest.mark.parametrize("kind", ["noise", "offset", "shrunk"])
def test_exact_moments_agree_with_sampled_targets(mdp_theta, estimator, kind):
    """Per first step (s, a): the sampled mean of the target (computed with rlteach.advantages on
    sampled episodes) lies within 5 standard errors of the exact mean, and the sampled variance
    within 5 of its standard errors (≈ var·√(2/n) for near-normal errors; n ≥ 100 per pair)."""
    mdp, theta = mdp_theta
    critic = tabular.critic_with_error(mdp, theta, kind, 1.0)
    eps = tabular.sample_episodes(mdp, theta, 6000, tabular.default_horizon(mdp.gamma) + 1, seed=0)
    rewards, values, next_values = tabular.critic_batch(eps, critic)
    no_end = torch.zeros_like(rewards, dtype=torch.bool)
    kind_, param = estimator
    if kind_ == "gae":
        adv, _ = advantages.gae(rewards, values, next_values, no_end, no_end, mdp.gamma, param)
        mean, second = tabular.lambda_return_moments(mdp, theta, critic, param)
    else:
        adv, _ = advantages.nstep_advantages(
            rewards, values, next_values, no_end, no_end, mdp.gamma, param
        )
        mean, second = tabular.nstep_return_moments(mdp, theta, critic, param)
    target = (adv[0] + values[0]).numpy()
    s0, a0 = eps.states[0], eps.actions[0]
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            x = target[(s0 == s) & (a0 == a)]
            assert len(x) >= 100
            exact_var = (second[s, a] - mean[s, a] ** 2).item()
            assert abs(x.mean() - mean[s, a].item()) < 5 * np.sqrt(exact_var / len(x)) + 1e-12
            assert abs(x.var() - exact_var) < 5 * exact_var * np.sqrt(2 / len(x)) + 1e-12


def test_noise_turns_into_variance_and_systematic_errors_into_bias(mdp_theta):
    """What notebook 03 reads off its plot: at λ = 0 a per-state noisy critic adds variance (the
    random next state samples its error), while an offset adds none; bias² falls to 0 at λ = 1."""
    mdp, theta = mdp_theta
    est = {lam: ("gae", lam) for lam in (0.0, 1.0)}
    exact = tabular.exact_estimator_errors(mdp, theta, tabular.state_values(mdp, theta), est)
    for kind in ("noise", "offset"):
        critic = tabular.critic_with_error(mdp, theta, kind, 1.0)
        stats = tabular.exact_estimator_errors(mdp, theta, critic, est)
        assert stats[1.0]["bias2"] < 1e-20 < stats[0.0]["bias2"]
        more_variance = stats[0.0]["variance"] > 2 * exact[0.0]["variance"]
        assert more_variance == (kind == "noise")


def test_critic_error_summary_names_where_each_error_is_least(mdp_theta):
    mdp, theta = mdp_theta
    lambdas = [0.0, 0.5, 1.0]
    rows = {row[0]: row for row in tabular.critic_error_summary(mdp, theta, 1.0, lambdas)}
    assert set(rows) == {"exact", *tabular.CRITIC_ERRORS}
    assert rows["exact"][1] == "every λ"
    assert rows["offset"][1:3] == (1.0, 0.0)  # least bias² at λ = 1, least variance at λ = 0
    est = {lam: ("gae", lam) for lam in lambdas}
    exact = tabular.exact_estimator_errors(mdp, theta, tabular.state_values(mdp, theta), est)
    for kind in tabular.CRITIC_ERRORS:
        critic = tabular.critic_with_error(mdp, theta, kind, 1.0)
        stats = tabular.exact_estimator_errors(mdp, theta, critic, est)
        mse = [stats[lam]["mse"] for lam in lambdas]
        expected = (
            stats[0.0]["variance"],
            stats[0.0]["variance"] / exact[0.0]["variance"],
            stats[1.0]["variance"],
            mse[0],
            min(mse),
        )
        assert rows[kind][5:] == pytest.approx(expected, rel=1e-12)
    assert rows["exact"][6] == 1.0 and rows["offset"][6] == pytest.approx(1.0, abs=1e-10)


def test_a_shrunk_critic_scales_the_one_step_variance_by_one_minus_k_squared(mdp_theta):
    """At λ = 0 the target R[s, a] + γ V̂(s') varies only through s' (R is deterministic given
    (s, a)): its variance is γ² Σ p(s,a) Var[V̂(s') | s, a], computed here by a plain loop over
    (s, a, s'). V̂ = (1 − k) V^π scales it by (1 − k)². Linear solves and sums: ~1e-12."""
    mdp, theta = mdp_theta
    V = tabular.state_values(mdp, theta)
    k = 0.8 / V.pow(2).mean().sqrt().item()
    pi = tabular.policy(theta)
    est = {"td": ("gae", 0.0)}
    for critic in (V, tabular.critic_with_error(mdp, theta, "shrunk", 0.8)):
        variance = 0.0
        for s in range(mdp.n_states):
            for a in range(mdp.n_actions):
                p_next = mdp.P[s, a]
                mean = (p_next * critic).sum().item()
                spread = (p_next * (critic - mean) ** 2).sum().item()
                variance += mdp.mu0[s].item() * pi[s, a].item() * mdp.gamma**2 * spread
        stats = tabular.exact_estimator_errors(mdp, theta, critic, est)["td"]
        assert stats["variance"] == pytest.approx(variance, abs=1e-12)
    exact = tabular.exact_estimator_errors(mdp, theta, V, est)["td"]["variance"]
    assert stats["variance"] == pytest.approx((1 - k) ** 2 * exact, abs=1e-12)


def test_critic_error_draws_counts_where_each_draw_has_its_least_variance(mdp_theta):
    mdp, theta = mdp_theta
    lambdas, seeds = [0.0, 0.5, 1.0], range(4)
    rows = tabular.critic_error_draws(mdp, theta, 1.0, lambdas, ("noise", "other policy"), seeds)
    est = {lam: ("gae", lam) for lam in lambdas}
    exact = tabular.exact_estimator_errors(mdp, theta, tabular.state_values(mdp, theta), est)
    for kind, least_text, at_zero, low, high in rows:
        least, ratios = [], []
        for seed in seeds:
            critic = tabular.critic_with_error(mdp, theta, kind, 1.0, seed)
            stats = tabular.exact_estimator_errors(mdp, theta, critic, est)
            least.append(min(lambdas, key=lambda lam: stats[lam]["variance"]))
            ratios.append(stats[0.0]["variance"] / exact[0.0]["variance"])
        assert least_text == ", ".join(f"{lam:g}" for lam in least)
        assert at_zero == least.count(0.0)
        assert (low, high) == pytest.approx((min(ratios), max(ratios)), rel=1e-12)


def test_critic_error_explorer_redraws_for_every_kind_and_draw(mdp_theta):
    mdp, theta = mdp_theta
    panel = widgets.critic_error_explorer(mdp, theta, [0.0, 0.5, 1.0], [1, 3])
    kind, size, seed = panel.children[1].children
    for choice in tabular.CRITIC_ERRORS:
        kind.value = choice
        seed.value = 3
        seed.value = 0
    assert "computing" not in panel.children[2].value
    assert (size.value, seed.max) == (1.0, 9)


def test_critic_error_kinds_draws_one_panel_per_kind(mdp_theta):
    mdp, theta = mdp_theta
    fig = plots.critic_error_kinds(mdp, theta, 1.0, [0.0, 0.5, 1.0])
    assert [ax.get_title() for ax in fig.axes] == list(tabular.CRITIC_ERRORS)


def collected_batch(seed=0, T=12, N=5):
    """A float64 stand-in for ``rollout.Batch``: episodes that end by termination or truncation
    inside the batch, ``next_values[t] = values[t+1]`` inside episodes and the value of the real
    final observation at a cut (a fresh number), every step valid."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64)
    values = torch.randn(T + 1, N, generator=g, dtype=torch.float64)
    ends = torch.rand(T, N, generator=g)
    terminated, truncated = ends < 0.1, (ends >= 0.1) & (ends < 0.2)
    final_obs_value = torch.randn(T, N, generator=g, dtype=torch.float64)
    next_values = torch.where(truncated, final_obs_value, values[1:])
    valid = torch.ones(T, N, dtype=torch.bool)
    return SimpleNamespace(
        rewards=rewards,
        values=values[:-1],
        next_values=next_values,
        terminated=terminated,
        truncated=truncated,
        valid=valid,
    )


def test_identity_gaps_are_at_rounding_level_on_consistent_data():
    """The four identities hold term by term in float64 (sums of ≤ 12 terms of size ~1)."""
    batch = collected_batch()
    assert batch.terminated.any() and batch.truncated.any()
    gaps = advantages.identity_gaps(batch, GAMMA)
    assert len(gaps) == 4
    assert all(gap < 1e-12 for _, gap in gaps)
    # and they can fail: a bootstrap value that does not match V(s_{t+1}) breaks GAE(1) = G − V
    batch.values = batch.values + 1.0
    assert (
        dict(advantages.identity_gaps(batch, GAMMA))["GAE(λ=1) vs Monte Carlo G_t − V(s_t)"] > 0.1
    )


def test_truncation_targets_bootstrap_at_a_cut_and_the_conflated_ones_do_not():
    batch = collected_batch(seed=1)
    rows = advantages.truncation_targets(batch, GAMMA, rows=100)
    cuts = (batch.truncated & ~batch.terminated).nonzero().tolist()
    assert [[t, i] for t, i, *_ in rows] == batch.truncated.nonzero().tolist()
    for t, i, next_value, bootstrapped, conflated in rows:
        r = batch.rewards[t, i].item()
        assert next_value == batch.next_values[t, i].item()
        expected = r if [t, i] not in cuts else r + GAMMA * next_value
        assert bootstrapped == pytest.approx(expected, abs=1e-12)
        assert conflated == pytest.approx(r, abs=1e-12)
    assert len(advantages.truncation_targets(batch, GAMMA, rows=2)) == 2
