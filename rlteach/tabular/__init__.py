"""Finite MDPs where every quantity of the policy gradient theorem can be computed exactly.

Notebook 01 uses this module to check the theorem with numbers. A policy is a table of softmax
logits ``theta[S, A]``: ``π(a|s) = exp θ[s,a] / Σ_b exp θ[s,b]``. All exact quantities are computed in
float64 with linear algebra, differentiably, so autograd gives the true gradient of ``J(θ)``:

* ``P_π[s, s'] = Σ_a π(a|s) P[s, a, s']`` and ``r_π[s] = Σ_a π(a|s) R[s, a]``      (eq. 1.1)
* ``V^π = (I − γ P_π)⁻¹ r_π``,  ``Q^π(s, a) = R[s, a] + γ Σ_s' P[s, a, s'] V^π(s')``  (eq. 1.2)
* ``J(θ) = μ0ᵀ V^π``                                                             (eq. 1.3)
* ``d^π(s) = Σ_t γ^t Pr(s_t = s) = [μ0ᵀ (I − γ P_π)⁻¹](s)`` (sums to 1/(1−γ))       (eq. 1.4)
* theorem: ``∇θ J = Σ_s d^π(s) Σ_a ∇θ π(a|s) Q^π(s, a)``                           (eq. 1.5)
* a trajectory's score is its actions' scores, ``∇ log p_θ(τ) = Σ_t ∇ log π_θ(a_t|s_t)`` (eq. 1.6),
  checked by enumerating every trajectory of a short horizon exactly
* the seed's form drops ``γ^t``: it weighs states by undiscounted visits ``η_H``           (eq. 1.10)
* the seed's form is ``H(1−γ)`` times longer than ``∇J`` in a continuing task            (eq. 1.11)
* average reward ``ρ(θ) = Σ_s ν(s) r_π(s)``, ``ν`` the stationary distribution            (eq. 1.12)

Monte Carlo estimators (REINFORCE, eq. 1.7–1.9) sample thousands of episodes at once, vectorised over
episodes with numpy.

The package, in course order:

* :mod:`~rlteach.tabular.mdp`: the MDPs and the exact quantities above (eq. 1.1–1.4, 1.12);
* :mod:`~rlteach.tabular.gradients`: exact gradients, the theorem, the seed's form, whole
  trajectories (eq. 1.5–1.12);
* :mod:`~rlteach.tabular.reinforce`: sampled episodes and REINFORCE estimates (eq. 1.7–1.9,
  notebooks 01–02);
* :mod:`~rlteach.tabular.critics`: imperfect critics and advantage estimators (notebook 03);
* :mod:`~rlteach.tabular.improvement`: performance difference and PPO's surrogate (notebook 04);
* :mod:`~rlteach.tabular.offpolicy`: what V-trace's evaluation converges to (notebook 09).

Every public name is re-exported here: ``from rlteach.tabular import X`` and ``tabular.X`` work for
all of them.
"""

from rlteach.tabular.critics import (
    CRITIC_ERRORS,
    advantage_estimator_errors,
    critic_batch,
    critic_error_draws,
    critic_error_shape,
    critic_error_summary,
    critic_with_error,
    exact_estimator_errors,
    lambda_return_moments,
    nstep_return_moments,
    td_fixed_point,
)
from rlteach.tabular.gradients import (
    MAX_TRAJECTORIES,
    angle_degrees,
    autograd_gradient,
    average_reward_gradient,
    average_reward_view,
    enumerate_trajectories,
    finite_difference_gradient,
    finite_horizon_gradient,
    finite_horizon_return,
    score_weighted_sum,
    seed_form_comparison,
    seed_form_gradient,
    softmax_jacobian,
    theorem_gradient,
    trajectory_gradient,
    trajectory_probabilities,
    trajectory_returns,
    undiscounted_visitation,
    visitation_weighted_gradient,
)
from rlteach.tabular.improvement import (
    advantage_values,
    improvement_along,
    mean_policy_kl,
    misleading_step,
    performance_difference,
    surrogate_improvement,
)
from rlteach.tabular.mdp import (
    DTYPE,
    TabularMDP,
    action_values,
    average_reward,
    bandit,
    chain_mdp,
    default_horizon,
    discounted_visitation,
    discounts,
    exact_return,
    policy,
    policy_matrices,
    random_mdp,
    state_values,
    stationary_distribution,
)
from rlteach.tabular.offpolicy import ratio_range, vtrace_evaluation, vtrace_policy
from rlteach.tabular.reinforce import (
    Episodes,
    baseline_values,
    episode_gradients,
    estimator_error_curves,
    reinforce_gradient,
    reinforce_samples,
    rewards_to_go,
    sample_episodes,
)

__all__ = [
    # mdp
    "DTYPE",
    "TabularMDP",
    "action_values",
    "average_reward",
    "bandit",
    "chain_mdp",
    "default_horizon",
    "discounted_visitation",
    "discounts",
    "exact_return",
    "policy",
    "policy_matrices",
    "random_mdp",
    "state_values",
    "stationary_distribution",
    # gradients
    "MAX_TRAJECTORIES",
    "angle_degrees",
    "autograd_gradient",
    "average_reward_gradient",
    "average_reward_view",
    "enumerate_trajectories",
    "finite_difference_gradient",
    "finite_horizon_gradient",
    "finite_horizon_return",
    "score_weighted_sum",
    "seed_form_comparison",
    "seed_form_gradient",
    "softmax_jacobian",
    "theorem_gradient",
    "trajectory_gradient",
    "trajectory_probabilities",
    "trajectory_returns",
    "undiscounted_visitation",
    "visitation_weighted_gradient",
    # reinforce
    "Episodes",
    "baseline_values",
    "episode_gradients",
    "estimator_error_curves",
    "reinforce_gradient",
    "reinforce_samples",
    "rewards_to_go",
    "sample_episodes",
    # critics
    "CRITIC_ERRORS",
    "advantage_estimator_errors",
    "critic_batch",
    "critic_error_draws",
    "critic_error_shape",
    "critic_error_summary",
    "critic_with_error",
    "exact_estimator_errors",
    "lambda_return_moments",
    "nstep_return_moments",
    "td_fixed_point",
    # improvement
    "advantage_values",
    "improvement_along",
    "mean_policy_kl",
    "misleading_step",
    "performance_difference",
    "surrogate_improvement",
    # offpolicy
    "ratio_range",
    "vtrace_evaluation",
    "vtrace_policy",
]
