"""Notebook 01's additions: the trajectory form of the gradient by exact enumeration (eq. 1.6, 1.7),
the horizon cut behind the size of the seed's estimator (eq. 1.11), the average-reward reading of
it (eq. 1.12), and the two widgets of notebook 01 (γ^t angle, baseline choice)."""

import io
import re

import numpy as np
import pytest
import torch

from rlteach import plots, tabular, widgets


def random_theta(S, A, seed):
    return torch.randn(S, A, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def autograd_of(objective, theta):
    theta = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(theta), theta)
    return grad


def recursion_return(mdp, theta, horizon):
    """``J_H = Σ_{t<H} γ^t μ_tᵀ r_π`` with ``μ_{t+1} = μ_t P_π``: no trajectories at all."""
    P_pi, r_pi = tabular.policy_matrices(mdp, theta)
    mu, total = mdp.mu0, torch.zeros((), dtype=torch.float64)
    for t in range(horizon):
        total = total + mdp.gamma**t * (mu @ r_pi)
        mu = mu @ P_pi
    return total


CASES = [(3, 2, 0.9, 4, 0), (5, 3, 0.9, 3, 1), (4, 2, 0.5, 5, 2), (2, 3, 0.99, 6, 3)]


@pytest.mark.parametrize("S, A, gamma, horizon, seed", CASES)
def test_score_sum_over_enumerated_trajectories_is_the_gradient_of_j_h(S, A, gamma, horizon, seed):
    """Σ_τ p G Σ_t ∇log π (no autograd) = autograd through Σ_τ p_θ(τ) G(τ) = autograd through the
    state-distribution recursion. All three are exact sums of at most 46,656 float64 terms of size
    <= max|G| ≈ 5, so rounding stays below 1e-12 relative."""
    mdp = tabular.random_mdp(S, A, gamma, seed=seed)
    theta = random_theta(S, A, seed)
    score_form = tabular.trajectory_gradient(mdp, theta, horizon)
    by_enumeration = tabular.finite_horizon_gradient(mdp, theta, horizon)
    by_recursion = autograd_of(lambda th: recursion_return(mdp, th, horizon), theta)
    scale = by_recursion.abs().max()
    assert (score_form - by_enumeration).abs().max() < 1e-12 * scale
    assert (score_form - by_recursion).abs().max() < 1e-12 * scale
    J_H = tabular.finite_horizon_return(mdp, theta, horizon)
    assert J_H.item() == pytest.approx(recursion_return(mdp, theta, horizon).item(), rel=1e-12)


def test_trajectory_score_is_the_sum_of_policy_scores():
    """eq. 1.6: autograd of log p_θ(τ), dynamics included, equals Σ_t (1[b=a_t] − π(b|s_t)) on the
    rows s_t, for every possible trajectory of a small MDP (the transitions never contribute)."""
    mdp = tabular.chain_mdp(4, gamma=0.9, slip=0.2)
    theta = random_theta(4, 2, 5)
    states, actions = tabular.enumerate_trajectories(mdp, 4)
    probs = tabular.trajectory_probabilities(mdp, theta, states, actions)
    possible = torch.nonzero(probs > 0).flatten()
    assert 0 < len(possible) < probs.numel()  # the corridor forbids some trajectories
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    pi = tabular.policy(theta)
    for n in possible[::7].tolist():
        s, a = states[:, n], actions[:, n]
        grad = autograd_of(
            lambda th, s=s, a=a: tabular.trajectory_probabilities(
                mdp, th, s[:, None], a[:, None]
            ).log()[0],
            theta,
        )
        by_hand = torch.zeros_like(theta)
        for s_t, a_t in zip(s, a, strict=True):
            by_hand[s_t] -= pi[s_t]
            by_hand[s_t, a_t] += 1.0
        assert torch.allclose(grad, by_hand, atol=1e-12)


def test_a_long_enumerated_horizon_reaches_the_discounted_gradient():
    """With γ = 0.1 and H = 9, γ^H = 1e-9: the rewards after the cut move ∇J by at most about
    Σ_{t≥H} γ^t (t+1) · 2 max|R| ≈ 2e-8, so 1e-7 separates agreement from a real difference."""
    mdp = tabular.random_mdp(2, 2, 0.1, seed=4)
    theta = random_theta(2, 2, 4)
    exact = tabular.autograd_gradient(mdp, theta)
    assert (tabular.trajectory_gradient(mdp, theta, 9) - exact).abs().max() < 1e-7
    assert (tabular.trajectory_gradient(mdp, theta, 2) - exact).abs().max() > 1e-4  # H matters


def test_too_many_trajectories_are_refused_by_name():
    with pytest.raises(ValueError, match="MAX_TRAJECTORIES"):
        tabular.enumerate_trajectories(tabular.random_mdp(5, 3, 0.9), 8)
    with pytest.raises(ValueError, match="horizon"):
        tabular.enumerate_trajectories(tabular.random_mdp(5, 3, 0.9), 0)


def test_stationary_distribution_and_average_reward_gradient():
    """ν from the linear solve = power iteration (P_π > 0 mixes: 500 steps are exact to 1e-12);
    ∇ρ by autograd = central differences of ρ (error O(ε²) + O(1e-16/ε) ≈ 1e-10)."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=0)
    theta = random_theta(5, 3, 0)
    P_pi, r_pi = tabular.policy_matrices(mdp, theta)
    nu = mdp.mu0.clone()
    for _ in range(500):
        nu = nu @ P_pi
    assert torch.allclose(tabular.stationary_distribution(mdp, theta), nu, atol=1e-12)
    assert tabular.average_reward(mdp, theta).item() == pytest.approx((nu @ r_pi).item(), abs=1e-12)
    eps, fd = 1e-5, torch.zeros_like(theta)
    for idx in np.ndindex(*theta.shape):
        step = torch.zeros_like(theta)
        step[idx] = eps
        up, down = (tabular.average_reward(mdp, theta + d) for d in (step, -step))
        fd[idx] = (up - down) / (2 * eps)
    assert (tabular.average_reward_gradient(mdp, theta) - fd).abs().max() < 1e-8


def test_the_size_of_the_seed_form_is_set_by_the_horizon_cut_not_its_direction():
    """Continuing task: |g_seed|/|∇J| grows like H(1−γ) (within 3% once H is well past the
    mixing time) while the angle settles; episodic corridor: both settle (the goal absorbs)."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=0)
    theta = random_theta(5, 3, 0)
    long, longer = (tabular.seed_form_comparison(mdp, theta, H) for H in (1000, 3000))
    for row in (long, longer):
        assert row["norm_ratio"] == pytest.approx(row["cut"], rel=0.03)
    assert abs(long["angle"] - longer["angle"]) < 0.05
    chain = tabular.chain_mdp(6, gamma=0.9, slip=0.1)
    zero = torch.zeros(6, 2, dtype=torch.float64)
    long, longer = (tabular.seed_form_comparison(chain, zero, H) for H in (1000, 3000))
    assert longer["norm_ratio"] == pytest.approx(long["norm_ratio"], rel=1e-9)
    assert longer["norm_ratio"] < longer["cut"] / 10


def test_without_gamma_t_the_direction_tends_to_the_average_reward_gradient():
    """eq. 1.12: as γ → 1, g_seed/H → ∇ρ in direction and size (error O(1−γ)); computed here from
    the pieces, and compared with what ``average_reward_view`` reports."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=0)
    theta = random_theta(5, 3, 0)
    grad_rho = tabular.average_reward_gradient(mdp, theta)
    angles, sizes = [], []
    for gamma in (0.9, 0.99):
        m = mdp.with_gamma(gamma)
        g = tabular.seed_form_gradient(m, theta) / tabular.default_horizon(gamma)
        angles.append(tabular.angle_degrees(g, grad_rho))
        sizes.append((g.norm() / grad_rho.norm()).item())
        view = tabular.average_reward_view(m, theta)
        assert view["seed_angle"] == pytest.approx(angles[-1], abs=1e-9)
        assert view["seed_size"] == pytest.approx(sizes[-1], rel=1e-12)
    assert angles[1] < angles[0] / 5 and angles[1] < 0.5, angles
    assert abs(sizes[1] - 1) < abs(sizes[0] - 1) and abs(sizes[1] - 1) < 0.01, sizes


def test_a_baseline_table_is_subtracted_like_the_exact_one():
    mdp = tabular.random_mdp(4, 3, 0.9, seed=1)
    theta = random_theta(4, 3, 1)
    eps = tabular.sample_episodes(mdp, theta, 50, seed=0)
    V = tabular.state_values(mdp, theta).detach()
    as_table = tabular.episode_gradients(mdp, theta, eps, baseline=V)
    assert torch.allclose(as_table, tabular.episode_gradients(mdp, theta, eps, baseline=True))
    with pytest.raises(ValueError, match="baseline"):
        tabular.episode_gradients(mdp, theta, eps, baseline=torch.zeros(3))


def test_every_baseline_of_the_panel_is_unbiased_and_v_pi_lowers_the_variance_most():
    """The baseline lesson of the panel: all choices estimate ∇J (|z| < 3 along ∇J over 4,000
    episodes); the variance orders as measured: exact V^π (4.8) < none (64) < −V^π (246) —
    factors of 3 or more, far beyond the few per cent of sampling error of a variance."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=0)
    theta = torch.zeros(5, 3, dtype=torch.float64)
    exact = tabular.autograd_gradient(mdp, theta).flatten()
    unit = exact / exact.norm()
    eps = tabular.sample_episodes(mdp, theta, 4000, seed=1)
    variance = {}
    for choice in widgets.BASELINES:
        baseline = widgets.baseline_table(mdp, theta, choice)
        g = tabular.episode_gradients(mdp, theta, eps, baseline=baseline).flatten(1)
        z = ((g.mean(0) - exact) @ unit) / ((g @ unit).std() / len(g) ** 0.5)
        assert abs(z) < 3, (choice, z)
        variance[choice] = g.var(0).sum().item()
    assert 3 * variance["exact V^π(s)"] < variance["none"]
    assert 3 * variance["none"] < variance["−V^π(s) (wrong sign)"]
    with pytest.raises(ValueError, match="baseline"):
        widgets.baseline_table(mdp, theta, "learned")


def test_gamma_t_panel_redraws_well_under_a_second(monkeypatch):
    """Moving the γ slider recomputes two exact gradients per MDP and redraws. The figure is
    rendered to PNG, as the browser gets it. CPU time (not wall time: the test machine is shared):
    measured 0.4–0.6 s at γ = 0.99, the longest horizon cut, on a loaded 2-core machine."""
    mdp = tabular.random_mdp(5, 3, 0.9, seed=0)
    chain = tabular.chain_mdp(6, slip=0.1)
    problems = {
        "random": (mdp, random_theta(5, 3, 0)),
        "corridor": (chain, torch.zeros(6, 2, dtype=torch.float64)),
    }
    rendered = []
    monkeypatch.setattr(widgets, "display", lambda fig: rendered.append(fig.savefig(io.BytesIO())))
    panel = widgets.gamma_t_explorer(problems, np.linspace(0.1, 0.99, 12))
    slider = panel.children[1].children[0]
    slider.value = 0.99
    assert len(rendered) == 2  # once at creation, once for the move


def test_gamma_t_bias_marks_the_chosen_gamma():
    mdp = tabular.random_mdp(3, 2, 0.9, seed=0)
    theta = torch.zeros(3, 2, dtype=torch.float64)
    gammas = [0.5, 0.9]
    series = {"random": [tabular.seed_form_comparison(mdp.with_gamma(g), theta) for g in gammas]}
    mark = {"random": tabular.seed_form_comparison(mdp.with_gamma(0.7), theta)}
    fig = plots.gamma_t_bias(gammas, series, at=(0.7, mark))
    left, right = fig.axes
    assert [tuple(line.get_xdata()) for line in left.lines][:2] == [(0.5, 0.9), (0.7,)]
    assert right.lines[1].get_ydata()[0] == pytest.approx(mark["random"]["norm_ratio"])


def test_the_baseline_dropdown_redraws_the_variance_bars(monkeypatch):
    """Choosing a baseline adds its bar next to the same form without one; 'none' removes it."""
    shown = []
    monkeypatch.setattr(widgets, "display", shown.append)
    panel = widgets.reinforce_explorer(counts=(16, 64), repeats=2)
    dropdown = panel.children[1].children[4]

    def bars():
        variance_axis = shown[-1].axes[1]
        labels = [t.get_text() for t in variance_axis.get_xticklabels()]
        return dict(zip(labels, [p.get_height() for p in variance_axis.patches], strict=True))

    assert list(bars()) == ["full return", "reward-to-go", "reward-to-go, b = exact V^π(s)"]
    assert "θ = 0" in shown[-1].get_suptitle()  # not the θ of sections 1–6: the title says so
    exact = bars()["reward-to-go, b = exact V^π(s)"]
    dropdown.value = "−V^π(s) (wrong sign)"
    wrong = bars()["reward-to-go, b = −V^π(s) (wrong sign)"]
    assert wrong > bars()["reward-to-go"] > exact
    dropdown.value = "none"
    assert list(bars()) == ["full return", "reward-to-go"]


def test_the_standard_errors_of_the_error_curves_predict_their_spread_over_seeds():
    """rmse_se and variance_se (delta method / one term per episode) against the real spread of
    the same measurements over 60 independent seeds. The spread of 60 draws is itself known to
    about ±9% (1/√(2·59)), and the delta method is first order: measured ratios 0.91–1.22, so
    [0.7, 1.45] accepts them and still fails an error bar off by half or by a factor √2 or more."""
    mdp = tabular.random_mdp(3, 2, 0.5, seed=0)
    theta = torch.zeros(3, 2, dtype=torch.float64)
    curves = [
        tabular.estimator_error_curves(mdp, theta, {"rtg": {}}, [4, 16], repeats=20, seed=s)["rtg"]
        for s in range(60)
    ]

    def spread_over_claimed(key):
        values = np.array([c[key] for c in curves])
        claimed = np.array([c[f"{key}_se"] for c in curves])
        return values.std(0, ddof=1) / np.sqrt((claimed**2).mean(0))

    for ratio in (*spread_over_claimed("rmse"), spread_over_claimed("variance")):
        assert 0.7 < ratio < 1.45, ratio


def test_the_reinforce_panel_samples_at_most_its_step_budget():
    """Fewer batches first (never fewer than 2), then smaller batch sizes. Short runs are left
    alone; the full profile's defaults (40 batches of up to 256 episodes of 175 steps) get as many
    batches as the budget of steps holds."""
    counts = (16, 64, 256, 1024, 4096)
    assert widgets.explorer_batches(counts, 64, 175, 10) == ([16, 64], 10, False)
    fitting = widgets.EXPLORER_STEPS // (256 * 175)
    assert widgets.explorer_batches(counts, 256, 175, 40) == ([16, 64, 256], fitting, True)
    for gamma in (0.0, 0.5, 0.9, 0.99):
        horizon = tabular.default_horizon(gamma)
        for n in counts:
            grid, batches, shortened = widgets.explorer_batches(counts, n, horizon, 40)
            assert batches >= 2 and batches * grid[-1] * horizon <= widgets.EXPLORER_STEPS
            assert grid == [c for c in counts if c <= grid[-1]]
            assert shortened == (batches < 40 or grid[-1] < n)
    grid, batches, shortened = widgets.explorer_batches(counts, 4096, 1833, 40)  # γ = 0.99
    assert 2 * 1024 * 1833 > widgets.EXPLORER_STEPS >= 2 * 256 * 1833  # so N = 256 is the most
    assert grid == [16, 64, 256] and batches == widgets.EXPLORER_STEPS // (256 * 1833)
    assert shortened


def test_the_reinforce_panel_draws_its_heaviest_setting_within_the_step_budget(monkeypatch):
    """γ = 0.99 with N = 4096 and 40 batches asked would sample 40 · 4096 · 1833 ≈ 3·10⁸ steps; the
    panel cuts it down to at most ``EXPLORER_STEPS`` and says so in its title (its redraw time is
    what that budget is for: about a second on this machine)."""
    drawn = []
    monkeypatch.setattr(widgets, "display", drawn.append)
    panel = widgets.reinforce_explorer(counts=(16, 64, 256, 1024, 4096), repeats=40)
    gamma, episodes = panel.children[1].children[:2]
    assert list(episodes.options) == [16, 64, 256, 1024, 4096]  # the slider offers the counts
    episodes.value = 4096
    gamma.value = 0.99
    assert len(drawn) == 3
    title = drawn[-1].get_suptitle()
    batches, most = (
        int(x) for x in re.search(r"(\d+) batches of ≤ (\d+) episodes", title).groups()
    )
    assert batches * most * tabular.default_horizon(0.99) <= widgets.EXPLORER_STEPS
    assert "cut down" in title


def test_variance_bars_show_each_variance_with_its_standard_error():
    fig = plots.variance_bars({"a": 100.0, "b": 4.0}, errors={"a": 5.0, "b": 0.25})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["100 ± 5", "4 ± 0.25"]
    (bars,) = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None]
    segments = bars.errorbar.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [(95.0, 105.0), (3.75, 4.25)]
