"""How far a policy step truly improves the return, against the surrogate PPO optimises (notebook 04).

Equation family 4.1–4.2 of notebook 04: the advantage ``A^π``, the performance-difference identity
(eq. 4.1), the surrogate ``L_old`` that keeps the old policy's states (eq. 4.2), the mean KL
between old and new policy, both along a direction of steps, and a step on which the surrogate
misleads most.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rlteach.tabular.mdp import (
    TabularMDP,
    _check_theta,
    action_values,
    discounted_visitation,
    exact_return,
    policy,
    state_values,
)


def advantage_values(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``A^π(s, a) = Q^π(s, a) − V^π(s)``, ``[S, A]``."""
    return action_values(mdp, theta) - state_values(mdp, theta)[:, None]


def _old_advantage_under(
    mdp: TabularMDP, theta: torch.Tensor, theta_old: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``Σ_s w(s) Σ_a π_θ(a|s) A^{π_old}(s, a)``: a differentiable scalar in ``θ`` (``w[S]``)."""
    adv_old = advantage_values(mdp, _check_theta(mdp, theta_old).detach())
    return weights @ (policy(_check_theta(mdp, theta)) * adv_old).sum(-1)


def performance_difference(
    mdp: TabularMDP, theta: torch.Tensor, theta_old: torch.Tensor
) -> torch.Tensor:
    """Right side of the performance-difference identity (Kakade & Langford 2002; notebook 04,
    eq. 4.1): ``Σ_s d^{π_θ}(s) Σ_a π_θ(a|s) A^{π_old}(s, a)``, which equals ``J(θ) − J(θ_old)``.

    ``d^{π_θ}`` is the unnormalised :func:`discounted_visitation` (it sums to ``1/(1−γ)``), so this
    is ``1/(1−γ) · E_{s∼d_norm^{π_θ}} E_{a∼π_θ}[A^{π_old}(s, a)]``. A scalar tensor.
    """
    return _old_advantage_under(mdp, theta, theta_old, discounted_visitation(mdp, theta))


def surrogate_improvement(
    mdp: TabularMDP, theta: torch.Tensor, theta_old: torch.Tensor
) -> torch.Tensor:
    """The surrogate ``L_old(θ) = Σ_s d^{π_old}(s) Σ_a π_θ(a|s) A^{π_old}(s, a)`` (notebook 04,
    eq. 4.2; Schulman et al. 2015): eq. 4.1 with the states still drawn from the *old* policy.

    Per state, ``Σ_a π_θ(a|s) A(s, a) = E_{a∼π_old}[r(θ) A(s, a)]``, so this is the exact
    expectation of PPO's ``r Â`` over ``d^{π_old}`` (times ``1/(1−γ)``). It is 0 at ``θ_old``
    with the gradient ``∇J(θ_old)``, and differentiable in ``θ``. A scalar tensor.
    """
    d_old = discounted_visitation(mdp, _check_theta(mdp, theta_old).detach())
    return _old_advantage_under(mdp, theta, theta_old, d_old)


def mean_policy_kl(mdp: TabularMDP, theta: torch.Tensor, theta_old: torch.Tensor) -> torch.Tensor:
    """``E_{s∼d_norm^{π_old}}[KL(π_old(·|s) ‖ π_θ(·|s))]``: the per-state KL averaged over the
    normalised *discounted* visitation of π_old (TRPO's mean-KL constraint). PPO's batch diagnostic
    instead weights states by their undiscounted frequency in the batch. A scalar tensor."""
    theta_old = _check_theta(mdp, theta_old).detach()
    log_old = torch.log_softmax(theta_old, -1)
    log_new = torch.log_softmax(_check_theta(mdp, theta), -1)
    kl = (log_old.exp() * (log_old - log_new)).sum(-1)
    return discounted_visitation(mdp, theta_old, normalized=True) @ kl


@torch.no_grad()
def improvement_along(
    mdp: TabularMDP,
    theta_old: torch.Tensor,
    direction: torch.Tensor,
    steps: Sequence[float] | np.ndarray,
) -> dict:
    """True improvement ``J(θ) − J(θ_old)`` and the surrogate ``L_old(θ)`` (eq. 4.2) at
    ``θ = θ_old + α · direction`` for each step size ``α`` in ``steps`` (``direction [S, A]``).

    Returns ``{"steps": [K], "true": [K], "surrogate": [K], "kl": [K]}`` (numpy), ``kl`` being
    :func:`mean_policy_kl`: how far ``π_θ`` has moved from ``π_old`` on the old states.
    """
    theta_old = _check_theta(mdp, theta_old)
    direction = _check_theta(mdp, direction)
    j_old = exact_return(mdp, theta_old)
    rows = []
    for alpha in steps:
        theta = theta_old + alpha * direction
        rows.append(
            (
                float(exact_return(mdp, theta) - j_old),
                float(surrogate_improvement(mdp, theta, theta_old)),
                float(mean_policy_kl(mdp, theta, theta_old)),
            )
        )
    true, surrogate, kl = np.array(rows).T
    return {"steps": np.asarray(steps, dtype=float), "true": true, "surrogate": surrogate, "kl": kl}


def misleading_step(
    mdp: TabularMDP, theta_old: torch.Tensor, iterations: int = 400, lr: float = 0.05, seed: int = 0
) -> torch.Tensor:
    """A step ``Δθ [S, A]`` from ``θ_old`` on which the surrogate (eq. 4.2) overstates the true
    improvement as much as search finds: Adam ascent on ``L_old(θ) − (J(θ) − J(θ_old))``.

    The gap and its gradient are 0 at ``θ_old`` (first-order agreement), so the ascent starts from
    ``θ_old`` plus a small normal perturbation (std 0.01, drawn with ``seed``). Deterministic.
    """
    theta_old = _check_theta(mdp, theta_old).detach()
    j_old = exact_return(mdp, theta_old)
    noise = torch.randn(
        theta_old.shape, dtype=theta_old.dtype, generator=torch.Generator().manual_seed(seed)
    )
    theta = (theta_old + 0.01 * noise).requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    for _ in range(iterations):
        gap = surrogate_improvement(mdp, theta, theta_old) - (exact_return(mdp, theta) - j_old)
        optimizer.zero_grad()
        (-gap).backward()
        optimizer.step()
    return (theta - theta_old).detach()
