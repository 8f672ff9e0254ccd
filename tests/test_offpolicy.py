"""What V-trace's evaluation converges to on a finite MDP (notebook 09): the values of π when the
importance weights are not truncated, those of the mixture π_ρ̄ of eq. 9.3 when they are."""

import math

import pytest
import torch

from rlteach import tabular

# Sampling error of 10,000 episodes of 10 steps: measured below 0.025 on this MDP for both ρ̄;
# the values it tells apart differ by 0.59.
TOLERANCE = 0.06


@pytest.fixture(scope="module")
def problem():
    mdp = tabular.random_mdp(4, 3, gamma=0.8, seed=1)
    gen = torch.Generator().manual_seed(0)
    target, behaviour = (torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    return mdp, target, behaviour


@pytest.mark.parametrize("rho_bar", [math.inf, 1.0])
def test_vtrace_evaluation_converges_to_the_values_of_the_policy_eq_9_3_names(problem, rho_bar):
    mdp, target, behaviour = problem
    learned = tabular.vtrace_evaluation(mdp, target, behaviour, rho_bar)
    exact = tabular.state_values(mdp, tabular.vtrace_policy(target, behaviour, rho_bar))
    assert (learned - exact).abs().max() < TOLERANCE


def test_the_two_fixed_points_are_far_apart_here(problem):
    """The check above tells the two policies apart: truncation (the data's ratios reach 7.5 > ρ̄
    = 1) moves the fixed point by about ten times the tolerance."""
    mdp, target, behaviour = problem
    assert tabular.ratio_range(target, behaviour)[1] > 5
    v_pi = tabular.state_values(mdp, target)
    v_mixed = tabular.state_values(mdp, tabular.vtrace_policy(target, behaviour, 1.0))
    assert (v_pi - v_mixed).abs().max() > 8 * TOLERANCE


def test_the_mixture_policy_by_hand():
    """eq. 9.3 on one state: π = (0.7, 0.3), μ = (0.2, 0.8), ρ̄ = 1 → min(μ, π) = (0.2, 0.3),
    normalised (0.4, 0.6); ρ̄ = ∞ (or ρ̄ ≥ max π/μ = 3.5) gives π back."""
    pi, mu = torch.tensor([[0.7, 0.3]], dtype=torch.float64), torch.tensor([[0.2, 0.8]])
    mixed = tabular.policy(tabular.vtrace_policy(pi.log(), mu.double().log(), 1.0))
    torch.testing.assert_close(mixed, torch.tensor([[0.4, 0.6]], dtype=torch.float64))
    for rho_bar in (math.inf, 3.5):
        back = tabular.policy(tabular.vtrace_policy(pi.log(), mu.double().log(), rho_bar))
        torch.testing.assert_close(back, pi)


def test_an_evaluation_that_does_not_converge_says_so(problem):
    mdp, target, behaviour = problem
    with pytest.raises(RuntimeError, match="did not converge in 2 iterations"):
        tabular.vtrace_evaluation(mdp, target, behaviour, 1.0, iterations=2)
