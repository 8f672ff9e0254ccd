"""Notebook 04's additions: the tabular surrogate of TRPO/PPO, target-KL early stopping, the
adaptive KL penalty and the max |r − 1| diagnostic, each against an independent computation.

Tabular quantities are float64 linear algebra: the identities hold to rounding (~1e-13 on these
5–8 state MDPs whose values are O(10)), so TOL = 1e-9 is far above rounding and far below any
wrong term (a missing 1/(1−γ) or the wrong visitation changes results by O(1e-2) or more).
"""

import copy
import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, kl_divergence

import rlteach
from rlteach import losses, plots, tabular, widgets
from rlteach.algos.common import build_agent, gradient_step, local_step
from rlteach.algos.ppo import (
    PPOConfig,
    adapted_kl_coef,
    gae_data,
    ppo_loss,
    ppo_update,
    shuffled_minibatches,
    state_kl,
)
from rlteach.config import make_config
from rlteach.history import History

TOL = 1e-9


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def mdp_and_thetas(seed):
    """A random MDP (5–8 states, 3 actions, γ = 0.9) and two random logit tables."""
    n_states = 5 + seed % 4
    mdp = tabular.random_mdp(n_states, 3, 0.9, seed=seed)
    g = _gen(seed)
    theta_old = torch.randn(n_states, 3, generator=g, dtype=torch.float64)
    theta = theta_old + torch.randn(n_states, 3, generator=g, dtype=torch.float64)
    return mdp, theta, theta_old


# ---------------------------------------------------------------- the tabular surrogate (4.1, 4.2)


@pytest.mark.parametrize("seed", range(5))
def test_performance_difference_identity_is_exact(seed):
    """J(θ) − J(θ_old) = Σ_s d^{π_θ}(s) Σ_a π_θ(a|s) A^{π_old}(s, a) with the unnormalised
    discounted visitation, i.e. 1/(1−γ) E_{s∼d_norm^{π_θ}} E_{a∼π_θ}[A^{π_old}]."""
    mdp, theta, theta_old = mdp_and_thetas(seed)
    exact = tabular.exact_return(mdp, theta) - tabular.exact_return(mdp, theta_old)
    assert abs(tabular.performance_difference(mdp, theta, theta_old) - exact) < TOL
    # the same with the normalised visitation and the 1/(1−γ) written out
    d_norm = tabular.discounted_visitation(mdp, theta, normalized=True)
    adv_old = tabular.action_values(mdp, theta_old) - tabular.state_values(mdp, theta_old)[:, None]
    expectation = d_norm @ (tabular.policy(theta) * adv_old).sum(-1)
    assert abs(expectation / (1 - mdp.gamma) - exact) < TOL
    # and the surrogate (old states) is not the same number away from θ_old
    assert abs(tabular.surrogate_improvement(mdp, theta, theta_old) - exact) > 1e-3


@pytest.mark.parametrize("seed", range(5))
def test_surrogate_is_zero_with_the_exact_gradient_at_theta_old(seed):
    mdp, _, theta_old = mdp_and_thetas(seed)
    theta = theta_old.clone().requires_grad_(True)
    surrogate = tabular.surrogate_improvement(mdp, theta, theta_old)
    (grad,) = torch.autograd.grad(surrogate, theta)
    assert abs(surrogate.item()) < TOL  # Σ_a π_old A^{π_old} = 0 in every state
    torch.testing.assert_close(grad, tabular.autograd_gradient(mdp, theta_old), atol=TOL, rtol=0)


def test_surrogate_is_the_expected_importance_weighted_advantage():
    """Plain loop: Σ_s d^{π_old}(s) Σ_a π_old(a|s) · r(a|s) · A^{π_old}(s, a), r = π_θ/π_old."""
    mdp, theta, theta_old = mdp_and_thetas(7)
    pi, pi_old = tabular.policy(theta), tabular.policy(theta_old)
    d_old = tabular.discounted_visitation(mdp, theta_old)
    Q, V = tabular.action_values(mdp, theta_old), tabular.state_values(mdp, theta_old)
    total = 0.0
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            ratio = pi[s, a].item() / pi_old[s, a].item()
            total += d_old[s].item() * pi_old[s, a].item() * ratio * (Q[s, a] - V[s]).item()
    assert abs(tabular.surrogate_improvement(mdp, theta, theta_old).item() - total) < TOL


def test_mean_policy_kl_matches_torch_kl_divergence():
    mdp, theta, theta_old = mdp_and_thetas(3)
    per_state = kl_divergence(Categorical(logits=theta_old), Categorical(logits=theta))
    d_norm = tabular.discounted_visitation(mdp, theta_old, normalized=True)
    assert abs(tabular.mean_policy_kl(mdp, theta, theta_old) - d_norm @ per_state) < TOL


def test_improvement_along_a_direction_agrees_to_first_order_and_then_parts():
    """Both curves start at 0 with slope |∇J| along the unit gradient; their gap is second order
    (doubling a small α multiplies it by 4, to O(α) corrections) and large at α = 5."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=0)
    theta_old = torch.randn(5, 3, generator=_gen(0), dtype=torch.float64)
    grad = tabular.autograd_gradient(mdp, theta_old)
    curves = tabular.improvement_along(mdp, theta_old, grad / grad.norm(), [0.0, 1e-3, 2e-3, 5.0])
    assert curves["true"][0] == 0.0 and abs(curves["surrogate"][0]) < TOL
    assert abs(curves["kl"][0]) < TOL
    slope = grad.norm().item()
    for key in ("true", "surrogate"):  # (f(α) − f(0))/α = slope + O(α): 1e-2 relative is loose
        assert abs(curves[key][1] / 1e-3 - slope) < 1e-2 * slope
    gap = np.abs(curves["surrogate"] - curves["true"])
    assert 3.9 < gap[2] / gap[1] < 4.1
    assert gap[3] > 0.1 * curves["true"][3]


def test_misleading_step_raises_the_surrogate_while_the_true_return_falls():
    """On notebook 04's MDP and θ_old: at θ_old + Δθ the surrogate (plain loop over states and
    actions) promises a gain and J, computed directly, falls; both by far more than rounding."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=0)
    theta_old = torch.randn(5, 3, generator=_gen(0), dtype=torch.float64)
    step = tabular.misleading_step(mdp, theta_old)
    assert torch.equal(step, tabular.misleading_step(mdp, theta_old))  # deterministic
    theta = theta_old + step
    pi, d_old = tabular.policy(theta), tabular.discounted_visitation(mdp, theta_old)
    adv_old = tabular.action_values(mdp, theta_old) - tabular.state_values(mdp, theta_old)[:, None]
    surrogate = sum(
        d_old[s].item() * pi[s, a].item() * adv_old[s, a].item() for s in range(5) for a in range(3)
    )
    true = (tabular.exact_return(mdp, theta) - tabular.exact_return(mdp, theta_old)).item()
    assert surrogate > 0.5 and true < -0.5


# ---------------------------------------------------------------- diagnostics and the penalty


def test_max_ratio_deviation_matches_loop():
    g = _gen(0)
    logp_old = -torch.rand(50, generator=g, dtype=torch.float64)
    logp_new = logp_old + 0.3 * torch.randn(50, generator=g, dtype=torch.float64)
    loop = max(
        abs(math.exp(n - o) - 1) for n, o in zip(logp_new.tolist(), logp_old.tolist(), strict=True)
    )
    assert losses.max_ratio_deviation(logp_new, logp_old) == pytest.approx(loop, abs=TOL)


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0])
def test_kl_penalty_objective_matches_loop(beta):
    g = _gen(1)
    logp_old = -torch.rand(40, generator=g, dtype=torch.float64) * 2
    logp_new = logp_old + 0.4 * torch.randn(40, generator=g, dtype=torch.float64)
    adv = torch.randn(40, generator=g, dtype=torch.float64)
    kl = torch.rand(40, generator=g, dtype=torch.float64)
    total = 0.0
    rows = zip(logp_new.tolist(), logp_old.tolist(), adv.tolist(), kl.tolist(), strict=True)
    for n, o, a, k in rows:
        total += math.exp(n - o) * a - beta * k
    objective = losses.kl_penalty_objective(logp_new, logp_old, adv, kl, beta)
    assert objective.item() == pytest.approx(total / 40, abs=TOL)


def test_state_kl_is_the_exact_categorical_kl_with_the_gradient_through_the_new_policy(
    batch_data,
):
    """Σ_a π_old(a|s) (log π_old(a|s) − log π_θ(a|s)) from the logits, by hand."""
    policy, data = batch_data
    moved = copy.deepcopy(policy)
    with torch.no_grad():
        for p in moved.actor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=_gen(2)))
    kl = state_kl(policy, moved, data["obs"])
    with torch.no_grad():
        log_old = torch.log_softmax(policy.actor.net(data["obs"]), -1)
        log_new = torch.log_softmax(moved.actor.net(data["obs"]), -1)
    by_hand = (log_old.exp() * (log_old - log_new)).sum(-1)
    assert kl.shape == by_hand.shape == data["logp"].shape
    torch.testing.assert_close(kl.detach(), by_hand, atol=1e-6, rtol=1e-5)  # float32 network
    kl.mean().backward()
    assert all(p.grad is None for p in policy.parameters())  # the old policy stays frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in moved.actor.parameters())


def test_state_kl_is_the_closed_form_gaussian_kl():
    """Diagonal Gaussians: Σ_i log(σ_i'/σ_i) + (σ_i² + (μ_i − μ_i')²) / (2σ_i'²) − 1/2."""
    cfg = make_config(PPOConfig, env_id="Pendulum-v1", num_envs=2, rollout_steps=8, hidden=(8,))
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden)
    data = agent.collector.collect(cfg.rollout_steps).flat()
    agent.close()
    old, new = agent.policy, copy.deepcopy(agent.policy)
    with torch.no_grad():
        for p in new.actor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=_gen(4)))
        mu0, mu1 = old.actor.mean_net(data["obs"]), new.actor.mean_net(data["obs"])
        s0, s1 = old.actor.log_std.exp(), new.actor.log_std.exp()
        by_hand = (s1.log() - s0.log() + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5).sum(-1)
        kl = state_kl(old, new, data["obs"])
    torch.testing.assert_close(kl, by_hand, atol=1e-6, rtol=1e-5)  # float32 network


@pytest.mark.parametrize(
    ("kl", "expected"),
    [
        (0.016, 2.0),  # > 1.5 · 0.01: double
        (0.015, 1.0),  # exactly 1.5 · d_targ: unchanged (the rule is strict)
        (0.01, 1.0),
        (0.01 / 1.5, 1.0),  # exactly d_targ / 1.5: unchanged
        (0.006, 0.5),  # < d_targ / 1.5: halve
        (0.0, 0.5),
    ],
)
def test_adaptive_kl_coefficient_follows_the_papers_rule(kl, expected):
    assert adapted_kl_coef(1.0, kl, kl_target=0.01) == expected


def test_kl_penalty_run_records_beta_adapted_after_every_update():
    """β follows (4.6) on d = the exact mean KL over the batch's states, recorded as ``kl``."""
    result = rlteach.train_ppo(total_steps=2048, num_envs=4, kl_penalty=0.002, kl_coef=0.5)
    betas = result.history.column("kl_coef", "updates")
    kls = result.history.column("kl", "updates")
    assert betas[0] == 0.5 and len(betas) >= 8  # 2048 valid steps in batches of 4 × 64
    for i in range(len(betas) - 1):
        assert betas[i + 1] == adapted_kl_coef(betas[i], kls[i], 0.002)
    assert len(set(betas)) > 1  # the rule acted at least once
    default = rlteach.train_ppo(total_steps=512, num_envs=4)
    assert "kl_coef" not in default.history.updates[0] and "kl" not in default.history.updates[0]


# ---------------------------------------------------------------- ppo_loss and ppo_update


@pytest.fixture(scope="module")
def batch_data():
    """A real CartPole batch of 4 envs × 32 steps, with GAE advantages, and a fresh agent."""
    cfg = make_config(PPOConfig, num_envs=4, rollout_steps=32, hidden=(16,), seed=3)
    agent = build_agent(cfg.env_id, cfg.num_envs, cfg.seed, cfg.hidden)
    data = gae_data(agent.collector.collect(cfg.rollout_steps), cfg)
    agent.close()
    return agent.policy, data


def test_ppo_loss_with_a_penalty_uses_it_instead_of_the_clip(batch_data):
    old_policy, data = batch_data
    cfg = make_config(PPOConfig, normalize_advantages=False, vf_coef=0.0)
    policy = copy.deepcopy(old_policy)
    with torch.no_grad():  # move the policy so that ratios differ from 1 and the clip matters
        for p in policy.actor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=_gen(0)))
    loss, _ = ppo_loss(policy, data, cfg, kl_coef=0.7, old_policy=old_policy)
    logp, _, _ = policy.evaluate_actions(data["obs"], data["actions"])
    ratio = (logp - data["logp"]).exp()
    with torch.no_grad():
        log_old = torch.log_softmax(old_policy.actor.net(data["obs"]), -1)
        log_new = torch.log_softmax(policy.actor.net(data["obs"]), -1)
    kl = (log_old.exp() * (log_old - log_new)).sum(-1)
    manual = -(ratio * data["adv"] - 0.7 * kl).mean()
    assert abs(loss.item() - manual.item()) < 1e-5  # float32 network: ~1e-7 relative rounding
    clipped, _ = ppo_loss(policy, data, cfg)
    assert abs(clipped.item() - loss.item()) > 1e-3


def replay_update(policy, data, cfg, seed, max_steps=None):
    """A plain loop over epochs and minibatches (no KL check) that stops after ``max_steps``
    steps (default: all), recording the whole batch's approx KL after every step:
    [KL after step 1, KL after step 2, ...]."""
    policy = copy.deepcopy(policy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    generator = _gen(seed)
    kls = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(data["obs"]), generator=generator)
        for idx in order.chunk(cfg.minibatches):
            loss, _ = ppo_loss(policy, {k: v[idx] for k, v in data.items()}, cfg)
            gradient_step(optimizer, loss, cfg.max_grad_norm)
            with torch.no_grad():
                logp, _, _ = policy.evaluate_actions(data["obs"], data["actions"])
            log_ratio = logp - data["logp"]
            kls.append((torch.expm1(log_ratio) - log_ratio).mean().item())
            if len(kls) == max_steps:
                return policy, kls
    return policy, kls


def run_update(policy, data, cfg, seed, **options):
    policy = copy.deepcopy(policy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    minibatches = shuffled_minibatches(data, cfg, _gen(seed))
    step = local_step(optimizer, cfg.max_grad_norm)
    return policy, ppo_update(policy, data, cfg, minibatches, step, **options)


def test_without_target_kl_the_update_takes_every_step_as_a_plain_loop(batch_data):
    policy, data = batch_data
    cfg = make_config(PPOConfig, epochs=3, minibatches=4)
    replayed, kls = replay_update(policy, data, cfg, seed=5)
    updated, stats = run_update(policy, data, cfg, seed=5)
    assert stats["minibatch_steps"] == len(kls) == 12
    assert stats["approx_kl"] == pytest.approx(kls[-1], rel=1e-6)
    for p, q in zip(updated.parameters(), replayed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_target_kl_stops_after_the_first_step_whose_kl_passes_it(batch_data):
    policy, data = batch_data
    cfg = make_config(PPOConfig, epochs=4, minibatches=4, lr=3e-3)
    _, kls = replay_update(policy, data, cfg, seed=5)
    # a threshold halfway between the KL after step k−1 and the (larger) KL after step k
    k = next(i for i in range(4, len(kls)) if kls[i] > max(kls[:i]) * 1.05)
    target = 0.5 * (max(kls[:k]) + kls[k])
    expected_steps = next(i for i, kl in enumerate(kls) if kl > target) + 1
    assert expected_steps == k + 1
    updated, stats = run_update(policy, data, cfg, seed=5, target_kl=target)
    assert stats["minibatch_steps"] == expected_steps < cfg.epochs * cfg.minibatches
    assert stats["approx_kl"] == pytest.approx(kls[k], rel=1e-6) and stats["approx_kl"] > target
    # the parameters are those of the plain loop stopped after the same number of steps
    stopped, _ = replay_update(policy, data, cfg, seed=5, max_steps=expected_steps)
    for p, q in zip(updated.parameters(), stopped.parameters(), strict=True):
        assert torch.equal(p, q)


def test_max_ratio_deviation_is_recorded_and_bounds_the_clip_fraction():
    result = rlteach.train_ppo(total_steps=1024, num_envs=4, epochs=20)
    for row in result.history.updates:
        assert row["max_ratio_dev"] >= 0 and row["minibatch_steps"] == 80
        if row["clip_fraction"] > 0:  # some ratio left [1 − ε, 1 + ε]
            assert row["max_ratio_dev"] > 0.2


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [("target_kl", -0.01), ("target_kl", 2.0), ("kl_penalty", -1.0), ("kl_coef", 0.0)],
)
def test_new_fields_reject_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=rf"PPOConfig\.{field} = {value!r} is invalid"):
        rlteach.train_ppo(**{field: value})


def test_new_options_are_off_by_default():
    cfg = PPOConfig()
    assert cfg.target_kl == 0.0 and cfg.kl_penalty == 0.0
    assert np.isfinite(cfg.kl_coef)


# ---------------------------------------------------------------- plots and the ε widget


def fake_history(kls, returns):
    """A History with one update row per KL (at 100, 200, ... env steps) and the given returns."""
    history = History()
    for i, kl in enumerate(kls):
        history.log_update(env_steps=100 * (i + 1), approx_kl=kl)
    history.log_episodes(returns, [10] * len(returns), env_steps=100 * len(kls))
    return history


def test_seed_table_gives_mean_and_range_over_seeds_of_per_run_medians():
    runs = {"a": [fake_history([1.0, 2.0, 9.0], [10.0, 20.0]), fake_history([4.0], [40.0])]}
    table = plots.seed_table(runs, ["approx_kl"], last=2)
    # medians 2 and 4: mean 3 in [2, 4]; returns: last-2 means 15 and 40: mean 27.5 in [15, 40]
    assert table.rows == [["a", "2", "3 [2, 4]", "27.5 [15, 40]"]]


def test_diagnostic_bands_draw_the_seed_mean_and_skip_a_run_without_the_field():
    runs = {
        "a": [fake_history([1.0, 3.0], [1.0]), fake_history([3.0, 5.0], [1.0])],
        "b": [History()],
    }
    runs["b"][0].log_update(env_steps=100, other=1.0)
    runs["b"][0].log_update(env_steps=200, other=1.0)
    fig = plots.diagnostic_bands(runs, ["approx_kl"], {"a": {"approx_kl": 2.5}})
    ax = fig.axes[0]
    (mean_line, level) = ax.get_lines()  # run b has no approx_kl: no line for it
    grid = mean_line.get_xdata()
    np.testing.assert_allclose(mean_line.get_ydata(), np.interp(grid, [100, 200], [2.0, 4.0]))
    assert list(level.get_ydata()) == [2.5, 2.5]


def test_surrogate_plot_shows_the_gap_against_the_kl():
    curves = {
        "steps": np.array([0.0, 1.0, 2.0]),
        "true": np.array([0.0, 0.9, 1.5]),
        "surrogate": np.array([0.0, 1.0, 1.8]),
        "kl": np.array([0.0, 0.1, 0.4]),
    }
    fig = plots.surrogate_vs_true(curves, slope=1.0)
    (gap,) = fig.axes[1].get_lines()
    np.testing.assert_allclose(gap.get_xdata(), [0.1, 0.4])
    np.testing.assert_allclose(gap.get_ydata(), [0.1, 0.3])


def test_clip_explorer_redraws_for_each_eps(monkeypatch):
    drawn = []
    real = plots.clip_objective

    def spy(clip_eps):
        drawn.append(clip_eps)
        return real(clip_eps=clip_eps)

    monkeypatch.setattr(plots, "clip_objective", spy)
    panel = widgets.clip_explorer(clip_eps=0.2)
    slider = panel.children[1].children[0]
    slider.value = 0.4
    assert drawn == [0.2, 0.4]
