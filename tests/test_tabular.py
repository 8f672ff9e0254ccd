"""Exact quantities on finite MDPs, the policy gradient theorem, and the REINFORCE estimators."""

import math

import numpy as np
import pytest
import torch

from rlteach import tabular

N_MDPS = 50


def mdp_cases(n=N_MDPS, seed=2024):
    """The 50 random MDPs of the acceptance test: 2–8 states, 2–4 actions, γ in [0, 0.99]."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        S, A = int(rng.integers(2, 9)), int(rng.integers(2, 5))
        gamma = float(rng.uniform(0.0, 0.99))
        mdp = tabular.random_mdp(S, A, gamma, seed=i)
        theta = torch.from_numpy(rng.normal(0.0, 1.0, size=(S, A)))
        yield mdp, theta


def rel_err(x, ref):
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def test_values_satisfy_the_bellman_equations_by_iteration():
    """V from the linear solve equals the fixed point of V ← r_π + γ P_π V found by a plain loop."""
    mdp = tabular.random_mdp(6, 3, 0.9, seed=1)
    theta = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pi = tabular.policy(theta)
    V = torch.zeros(6, dtype=torch.float64)
    for _ in range(400):  # contraction by 0.9 per sweep: 0.9**400 ≈ 5e-19
        V = torch.tensor(
            [
                sum(
                    pi[s, a]
                    * (mdp.R[s, a] + mdp.gamma * sum(mdp.P[s, a, t] * V[t] for t in range(6)))
                    for a in range(3)
                )
                for s in range(6)
            ],
            dtype=torch.float64,
        )
    assert torch.allclose(tabular.state_values(mdp, theta), V, atol=1e-12)
    Q = tabular.action_values(mdp, theta)
    assert torch.allclose((pi * Q).sum(-1), V, atol=1e-12)  # V(s) = Σ_a π(a|s) Q(s, a)


def test_discounted_visitation_counts_discounted_time_in_each_state():
    """d^π = Σ_t γ^t μ_t with μ_{t+1} = μ_t P_π, summed by a loop; total mass 1/(1−γ)."""
    mdp = tabular.random_mdp(4, 2, 0.8, seed=3)
    theta = torch.zeros(4, 2, dtype=torch.float64)
    P_pi, _ = tabular.policy_matrices(mdp, theta)
    mu, d = mdp.mu0.clone(), torch.zeros(4, dtype=torch.float64)
    for t in range(300):  # 0.8**300 ≈ 1e-29
        d += mdp.gamma**t * mu
        mu = mu @ P_pi
    assert torch.allclose(tabular.discounted_visitation(mdp, theta), d, atol=1e-12)
    assert tabular.discounted_visitation(mdp, theta).sum().item() == pytest.approx(1 / (1 - 0.8))
    assert tabular.discounted_visitation(mdp, theta, normalized=True).sum().item() == pytest.approx(
        1
    )


def test_three_exact_gradients_agree_on_50_random_mdps():
    """Autograd through J, the theorem written out, and central finite differences: 1e-6 relative."""
    worst_theorem = worst_fd = 0.0
    for mdp, theta in mdp_cases():
        auto = tabular.autograd_gradient(mdp, theta)
        worst_theorem = max(worst_theorem, rel_err(tabular.theorem_gradient(mdp, theta), auto))
        worst_fd = max(worst_fd, rel_err(tabular.finite_difference_gradient(mdp, theta), auto))
    assert worst_theorem < 1e-6, worst_theorem
    assert worst_fd < 1e-6, worst_fd


def projected_z(samples, exact):
    """z-score of the batch mean along the exact gradient's direction u: (mean·u − |g|) / SE."""
    u = (exact / exact.norm()).flatten()
    proj = samples.flatten(1) @ u
    se = proj.std() / math.sqrt(len(proj))
    return ((proj.mean() - exact.norm()) / se).item()


def test_reinforce_is_unbiased_on_50_random_mdps():
    """The mean of 2,000 independent episode estimates lies within 3 standard errors of ∇J.

    The statistic is the error of the mean projected on the exact gradient's direction, divided by
    its standard error (sample std / √E; with E = 2,000 the CLT makes it ≈ N(0, 1)). One z per MDP;
    |z| < 3 has probability 0.9973 each. Also the z's as a whole must look standard normal: their mean
    square, ~χ²₅₀/50 (sd 0.2), lies in [0.4, 1.8] — a biased estimator pushes it far above.
    """
    zs = []
    for i, (mdp, theta) in enumerate(mdp_cases()):
        if mdp.gamma == 0 or tabular.autograd_gradient(mdp, theta).norm() < 1e-12:
            continue
        exact = tabular.autograd_gradient(mdp, theta)
        samples = tabular.reinforce_samples(mdp, theta, episodes=2000, seed=1000 + i)
        zs.append(projected_z(samples, exact))
    zs = np.array(zs)
    assert len(zs) >= 45
    assert np.all(np.abs(zs) < 3), zs
    assert 0.4 < np.mean(zs**2) < 1.8, np.mean(zs**2)


@pytest.mark.parametrize(
    "options",
    [dict(reward_to_go=False), dict(baseline=True), dict(reward_to_go=False, baseline=True)],
    ids=["full-return", "reward-to-go+baseline", "full-return+baseline"],
)
def test_every_gamma_t_variant_is_unbiased(options):
    """Full return, reward-to-go and the exact-value baseline all estimate the same gradient."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=7)
    theta = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    exact = tabular.autograd_gradient(mdp, theta)
    samples = tabular.reinforce_samples(mdp, theta, episodes=4000, seed=11, **options)
    assert abs(projected_z(samples, exact)) < 3


def test_causality_and_baseline_lower_the_variance():
    """Per-episode variance (trace of the covariance): full return > reward-to-go > with baseline."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=7)
    theta = torch.zeros(5, 3, dtype=torch.float64)

    def total_variance(**options):
        return tabular.reinforce_samples(mdp, theta, 3000, seed=5, **options).var(0).sum().item()

    full, rtg, base = (
        total_variance(reward_to_go=False),
        total_variance(),
        total_variance(baseline=True),
    )
    # Measured: 205 > 6.2 > 5.1. The variance estimates from 3,000 episodes carry a few per cent of
    # sampling error, so a 10% margin separates a real reduction from noise.
    assert full > 1.5 * rtg and rtg > 1.1 * base, (full, rtg, base)


def test_the_seeds_estimator_without_gamma_t_is_biased():
    """Dropping γ^t (seed §2.1) moves the estimate many standard errors away from ∇J at γ = 0.9."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=7)
    theta = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    exact = tabular.autograd_gradient(mdp, theta)
    samples = tabular.reinforce_samples(mdp, theta, 4000, seed=3, gamma_t=False)
    se = samples.std(0) / math.sqrt(len(samples))
    assert ((samples.mean(0) - exact).abs() / se).max() > 10


def test_score_function_on_a_bandit_matches_the_exact_gradient():
    """One-state bandit: E[∇ log π(a) r(a)] = ∇ Σ_a π(a) r(a) (the log-derivative trick)."""
    mdp = tabular.bandit([1.0, 0.0, -0.5])
    theta = torch.tensor([[0.2, -0.3, 0.1]], dtype=torch.float64)
    pi = tabular.policy(theta)[0]
    closed_form = pi * (mdp.R[0] - (pi * mdp.R[0]).sum())  # ∂/∂θ_b Σ_a π_a r_a = π_b (r_b − r̄)
    assert torch.allclose(tabular.autograd_gradient(mdp, theta)[0], closed_form, atol=1e-14)
    samples = tabular.reinforce_samples(mdp, theta, 20000, seed=0)
    assert abs(projected_z(samples, closed_form[None])) < 3


def test_exact_return_matches_the_average_sampled_return():
    mdp = tabular.chain_mdp(6, gamma=0.95, slip=0.2)
    theta = torch.zeros(6, 2, dtype=torch.float64)
    G0 = tabular.sample_episodes(mdp, theta, episodes=5000, seed=0).discounted_returns()
    se = G0.std(ddof=1) / math.sqrt(len(G0))
    assert abs(G0.mean() - tabular.exact_return(mdp, theta).item()) < 3 * se


def test_sampled_rewards_to_go_follow_their_definition():
    mdp = tabular.random_mdp(3, 2, 0.7, seed=0)
    eps = tabular.sample_episodes(mdp, torch.zeros(3, 2), episodes=4, horizon=6, seed=0)
    rtg = eps.rewards_to_go()
    for e in range(4):
        for t in range(6):
            expected = sum(0.7 ** (k - t) * eps.rewards[k, e] for k in range(t, 6))
            assert rtg[t, e] == pytest.approx(expected, abs=1e-12)
    assert np.allclose(eps.discounted_returns(), rtg[0])


def test_sampling_is_seeded():
    mdp = tabular.random_mdp(4, 2, 0.9, seed=0)
    a = tabular.reinforce_gradient(mdp, torch.zeros(4, 2), episodes=50, seed=3)
    b = tabular.reinforce_gradient(mdp, torch.zeros(4, 2), episodes=50, seed=3)
    c = tabular.reinforce_gradient(mdp, torch.zeros(4, 2), episodes=50, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_thousands_of_episodes_are_fast():
    """Vectorised over episodes: 5,000 episodes of 175 steps (γ = 0.9) in well under a second."""
    import time

    mdp = tabular.random_mdp(8, 4, 0.9, seed=0)
    start = time.perf_counter()
    tabular.reinforce_gradient(mdp, torch.zeros(8, 4), episodes=5000, seed=0)
    # Generous bound (measured ~0.2 s): guards against an accidental Python loop over episodes.
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: tabular.TabularMDP(
                torch.full((2, 2, 2), 0.6), torch.zeros(2, 2), [0.5, 0.5], 0.9
            ),
            "sums to 1.2",
        ),
        (
            lambda: tabular.TabularMDP(
                torch.full((2, 2, 2), 0.5), torch.zeros(2, 2), [0.5, 0.5], 1.0
            ),
            "gamma = 1.0",
        ),
        (
            lambda: tabular.TabularMDP(
                torch.full((2, 2, 2), 0.5), torch.zeros(2, 3), [0.5, 0.5], 0.9
            ),
            "R must have shape",
        ),
        (
            lambda: tabular.TabularMDP(torch.full((2, 2, 2), 0.5), torch.zeros(2, 2), [1.0], 0.9),
            "mu0 must have shape",
        ),
        (
            lambda: tabular.exact_return(tabular.random_mdp(3, 2, 0.9), torch.zeros(2, 3)),
            "theta must have shape",
        ),
        (
            lambda: tabular.reinforce_gradient(
                tabular.random_mdp(3, 2, 0.9), torch.zeros(3, 2), episodes=0
            ),
            "episodes = 0",
        ),
        (
            lambda: tabular.reinforce_gradient(
                tabular.random_mdp(3, 2, 0.9), torch.zeros(3, 2), reward_to_go=False, gamma_t=False
            ),
            "reward_to_go",
        ),
    ],
)
def test_bad_input_is_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_the_seeds_estimator_converges_to_the_undiscounted_visitation_form():
    """Without γ^t the Monte Carlo mean is the η_H-weighted sum of eq. 1.10, not ∇J."""
    mdp = tabular.chain_mdp(5, gamma=0.9, slip=0.1)
    theta = torch.zeros(5, 2, dtype=torch.float64)
    target = tabular.seed_form_gradient(mdp, theta)
    samples = tabular.reinforce_samples(mdp, theta, 4000, seed=2, gamma_t=False)
    assert abs(projected_z(samples, target)) < 3
    assert tabular.angle_degrees(target, tabular.autograd_gradient(mdp, theta)) > 1


def test_error_curve_falls_like_one_over_root_n():
    """Fitted log-log slope of the RMS error of an unbiased estimator is −1/2 (± 0.1 for 40 repeats)."""
    mdp = tabular.random_mdp(4, 2, 0.8, seed=0)
    curve = tabular.estimator_error_curves(
        mdp, torch.zeros(4, 2), {"rtg": {}}, counts=[16, 64, 256, 1024], repeats=40, seed=0
    )["rtg"]
    slope = np.polyfit(np.log(curve["counts"]), np.log(curve["rmse"]), 1)[0]
    assert -0.6 < slope < -0.4, slope
    # rmse² ≈ trace(Cov)/N: checks the variance it reports against the errors it measured
    assert curve["rmse"][-1] ** 2 * 1024 == pytest.approx(curve["variance"], rel=0.35)


def test_advantage_estimators_trade_critic_bias_for_variance():
    """Exact critic: every λ is unbiased (bias² at Monte Carlo noise level). Noisy critic: bias²
    falls and variance rises from λ = 0 (trusts V̂) to λ = 1 (trusts the sampled return)."""
    mdp = tabular.random_mdp(6, 3, 0.9, seed=1)
    theta = torch.zeros(6, 3, dtype=torch.float64)
    V = tabular.state_values(mdp, theta)
    estimators = {lam: ("gae", lam) for lam in (0.0, 0.5, 1.0)} | {"n3": ("nstep", 3)}
    exact = tabular.advantage_estimator_errors(mdp, theta, V, estimators, episodes=3000, seed=0)
    for stats in exact.values():  # bias² of a mean of ~170 samples per (s,a): ~var/170
        assert stats["bias2"] < 0.05 * stats["variance"]
    noisy_critic = V + torch.from_numpy(np.random.default_rng(0).normal(0, 1, 6))
    noisy = tabular.advantage_estimator_errors(mdp, theta, noisy_critic, estimators, 3000, seed=0)
    assert noisy[0.0]["bias2"] > 3 * noisy[1.0]["bias2"]
    # (the noisy V̂(s') adds variance of its own, so λ = 0 need not have the least)
    assert max(noisy[0.0]["variance"], noisy[0.5]["variance"]) < noisy[1.0]["variance"] / 2
    assert noisy[1.0] == pytest.approx(exact[1.0])  # λ = 1 never looks at V̂ beyond the baseline


def test_td_fixed_point_recovers_v_only_when_time_limit_cuts_are_bootstrapped():
    mdp = tabular.random_mdp(5, 2, 0.95, seed=3)
    theta = torch.zeros(5, 2, dtype=torch.float64)
    exact = tabular.state_values(mdp, theta)
    eps = tabular.sample_episodes(mdp, theta, episodes=3000, horizon=31, seed=0)
    # 90k transitions: the fitted values carry a few per cent of sampling noise at most
    assert torch.allclose(tabular.td_fixed_point(mdp, eps, cut_is_terminal=False), exact, rtol=0.05)
    conflated = tabular.td_fixed_point(mdp, eps, cut_is_terminal=True)
    assert ((conflated - exact).abs() / exact.abs()).min() > 0.2
