"""Exact policy gradients, computed several ways that must agree (notebook 01).

Equation family 1.5–1.12 of notebook 01: ``∇θ J`` by autograd and by central differences, the
policy gradient theorem written out (eq. 1.5), the seed's undiscounted form and how it differs from
``∇J`` (eq. 1.10–1.11) or approaches ``∇ρ`` (eq. 1.12), and the gradient of a short horizon by
enumerating every trajectory, with a trajectory's score as the sum of its actions' scores
(eq. 1.6–1.7).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from rlteach.tabular.mdp import (
    DTYPE,
    TabularMDP,
    _check_theta,
    action_values,
    average_reward,
    default_horizon,
    discounted_visitation,
    discounts,
    exact_return,
    policy,
    policy_matrices,
)

# ----------------------------------------------------------------------------- exact gradients


def autograd_gradient(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``∇θ J`` by autograd through the closed form of :func:`exact_return`, ``[S, A]``."""
    return _autograd(exact_return, mdp, theta)


def average_reward_gradient(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``∇θ ρ`` by autograd through :func:`average_reward`, ``[S, A]`` (eq. 1.12)."""
    return _autograd(average_reward, mdp, theta)


def _autograd(
    objective: Callable[[TabularMDP, torch.Tensor], torch.Tensor],
    mdp: TabularMDP,
    theta: torch.Tensor,
) -> torch.Tensor:
    """``∇θ objective(mdp, θ)`` for a differentiable scalar objective, ``[S, A]``."""
    theta = _check_theta(mdp, theta).detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(mdp, theta), theta)
    return grad


def softmax_jacobian(pi: torch.Tensor) -> torch.Tensor:
    """``∂π(a|s)/∂θ[s, b] = π(a|s) (1[a=b] − π(b|s))`` as ``[S, A(a), A(b)]``.

    (``θ[s', ·]`` for ``s' ≠ s`` does not move ``π(·|s)``, so the full Jacobian is block diagonal.)
    """
    eye = torch.eye(pi.shape[-1], dtype=pi.dtype)
    return pi.unsqueeze(-1) * (eye - pi.unsqueeze(-2))


def visitation_weighted_gradient(
    mdp: TabularMDP, theta: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``Σ_s w(s) Σ_a ∇θ π(a|s) Q^π(s, a)`` for state weights ``w[S]``, no autograd, ``[S, A]``.

    ``∇_{θ[s,b]}`` of the inner sum is ``Σ_a ∂π(a|s)/∂θ[s,b] · Q^π(s, a)``, which for the softmax
    simplifies to ``π(b|s) (Q^π(s, b) − V^π(s))``: the advantage appears by itself.
    """
    theta = _check_theta(mdp, theta).detach()
    with torch.no_grad():
        Q = action_values(mdp, theta)
        jac = softmax_jacobian(policy(theta))
        return weights[:, None] * torch.einsum("sab,sa->sb", jac, Q)


def theorem_gradient(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """The policy gradient theorem written out, ``Σ_s d^π(s) Σ_a ∇θ π(a|s) Q^π(s, a)`` (eq. 1.5).

    ``d^π`` is the discounted visitation of :func:`discounted_visitation`; no autograd. ``[S, A]``.
    """
    with torch.no_grad():
        return visitation_weighted_gradient(mdp, theta, discounted_visitation(mdp, theta))


def undiscounted_visitation(mdp: TabularMDP, theta: torch.Tensor, horizon: int) -> torch.Tensor:
    """``η_H(s) = Σ_{t<H} Pr(s_t = s)``: expected visits in ``H`` steps, no discount, ``[S]``."""
    P_pi, _ = policy_matrices(mdp, theta)
    mu, eta = mdp.mu0.clone(), torch.zeros(mdp.n_states, dtype=DTYPE)
    for _ in range(horizon):
        eta += mu
        mu = mu @ P_pi
    return eta


def seed_form_gradient(
    mdp: TabularMDP, theta: torch.Tensor, horizon: int | None = None
) -> torch.Tensor:
    """What the seed's estimator ``E[Σ_{t<H} ∇ log π(a_t|s_t) Q^π(s_t, a_t)]`` converges to, ``[S, A]``.

    The same sum as the theorem with the undiscounted visits ``η_H`` in place of ``d^π`` (eq. 1.10).
    It is not ``∇J`` for ``γ < 1``: states reached late weigh as much as early ones.
    """
    horizon = default_horizon(mdp.gamma) if horizon is None else horizon
    with torch.no_grad():
        return visitation_weighted_gradient(
            mdp, theta, undiscounted_visitation(mdp, theta, horizon)
        )


def angle_degrees(u: torch.Tensor, v: torch.Tensor) -> float:
    """Angle between two gradients seen as flat vectors, in degrees."""
    cos = (u.flatten() @ v.flatten()) / (u.norm() * v.norm())
    return math.degrees(math.acos(max(-1.0, min(1.0, cos.item()))))


def seed_form_comparison(
    mdp: TabularMDP, theta: torch.Tensor, horizon: int | None = None
) -> dict[str, float]:
    """How the seed's form ``g_seed`` (eq. 1.10, episodes cut after ``horizon`` steps) differs
    from ``∇J``: ``{"angle": degrees, "norm_ratio": |g_seed| / |∇J|, "cut": H (1 − γ)}``.

    ``η_H`` sums to ``H`` and ``d^π`` to ``1/(1−γ)``; where both spread alike over the states (a
    continuing task) the norm ratio is close to ``H(1−γ)`` (eq. 1.11), the angle is not affected.
    """
    horizon = default_horizon(mdp.gamma) if horizon is None else horizon
    seed_form = seed_form_gradient(mdp, theta, horizon)
    exact = autograd_gradient(mdp, theta)
    return {
        "angle": angle_degrees(seed_form, exact),
        "norm_ratio": (seed_form.norm() / exact.norm()).item(),
        "cut": horizon * (1 - mdp.gamma),
    }


def finite_difference_gradient(
    mdp: TabularMDP, theta: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Central differences ``(J(θ + ε e_i) − J(θ − ε e_i)) / 2ε`` for every entry, ``[S, A]``.

    The truncation error is ``O(ε²)`` (about 1e-10 for ε = 1e-5) and the rounding error about
    ``1e-16/ε``, so the result agrees with the exact gradient to ~1e-9.
    """
    theta = _check_theta(mdp, theta).detach()
    grad = torch.zeros_like(theta)
    with torch.no_grad():
        for idx in np.ndindex(*theta.shape):
            step = torch.zeros_like(theta)
            step[idx] = eps
            grad[idx] = (exact_return(mdp, theta + step) - exact_return(mdp, theta - step)) / (
                2 * eps
            )
    return grad


def average_reward_view(mdp: TabularMDP, theta: torch.Tensor) -> dict[str, float]:
    """The seed's form (eq. 1.10, default horizon cut ``H``) and ``∇J`` against ``∇ρ`` (eq. 1.12).

    Returns ``{"horizon": H, "seed_angle": angle(g_seed, ∇ρ) in degrees, "seed_size":
    |g_seed| / (H |∇ρ|), "discounted_angle": angle(∇J, ∇ρ)}``. As ``γ → 1`` (with ``H`` growing
    with it) both angles go to 0 and the size to 1: ``g_seed / H`` estimates ``∇ρ``.
    """
    horizon = default_horizon(mdp.gamma)
    seed_form = seed_form_gradient(mdp, theta, horizon)
    grad_rho = average_reward_gradient(mdp, theta)
    return {
        "horizon": horizon,
        "seed_angle": angle_degrees(seed_form, grad_rho),
        "seed_size": (seed_form.norm() / (horizon * grad_rho.norm())).item(),
        "discounted_angle": angle_degrees(autograd_gradient(mdp, theta), grad_rho),
    }


# ----------------------------------------------------------------------------- whole trajectories

MAX_TRAJECTORIES = 2_000_000


def enumerate_trajectories(mdp: TabularMDP, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every state-action sequence ``τ = (s_0, a_0, …, s_{H−1}, a_{H−1})`` of ``H = horizon`` steps.

    Returns ``states`` and ``actions``, int64 ``[H, N]`` with ``N = (S·A)^H`` (impossible ones
    included: they get probability 0). Refuses more than ``MAX_TRAJECTORIES`` of them.
    """
    if horizon < 1:
        raise ValueError(f"horizon = {horizon!r} is invalid: must be >= 1")
    pairs = mdp.n_states * mdp.n_actions
    if pairs**horizon > MAX_TRAJECTORIES:
        raise ValueError(
            f"horizon = {horizon} gives (S·A)^H = {pairs}^{horizon} trajectories, more than "
            f"MAX_TRAJECTORIES = {MAX_TRAJECTORIES:,}: use a shorter horizon or a smaller MDP"
        )
    index = np.stack(np.unravel_index(np.arange(pairs**horizon), (pairs,) * horizon))
    return index // mdp.n_actions, index % mdp.n_actions


def trajectory_probabilities(
    mdp: TabularMDP, theta: torch.Tensor, states: np.ndarray, actions: np.ndarray
) -> torch.Tensor:
    """``p_θ(τ) = μ0(s_0) Π_t π_θ(a_t|s_t) Π_{t<H−1} P[s_t, a_t, s_{t+1}]`` for ``states`` and
    ``actions`` ``[H, N]``; ``[N]``, differentiable in ``θ`` (eq. 1.6)."""
    s, a = torch.from_numpy(states), torch.from_numpy(actions)
    pi = policy(_check_theta(mdp, theta))
    return mdp.mu0[s[0]] * pi[s, a].prod(0) * mdp.P[s[:-1], a[:-1], s[1:]].prod(0)


def trajectory_returns(mdp: TabularMDP, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``G(τ) = Σ_{t<H} γ^t R[s_t, a_t]`` for ``[H, N]`` trajectories, ``[N]``."""
    return discounts(mdp.gamma, len(states)) @ mdp.R.numpy()[states, actions]


def finite_horizon_return(mdp: TabularMDP, theta: torch.Tensor, horizon: int) -> torch.Tensor:
    """``J_H(θ) = Σ_τ p_θ(τ) G(τ)`` over every trajectory of ``horizon`` steps, by enumeration.

    A differentiable float64 scalar: autograd through it differentiates ``p_θ(τ)`` itself.
    """
    states, actions = enumerate_trajectories(mdp, horizon)
    probs = trajectory_probabilities(mdp, theta, states, actions)
    return probs @ torch.from_numpy(trajectory_returns(mdp, states, actions))


def finite_horizon_gradient(mdp: TabularMDP, theta: torch.Tensor, horizon: int) -> torch.Tensor:
    """``∇θ J_H`` by autograd through :func:`finite_horizon_return`: it differentiates every factor
    of ``p_θ(τ)``, the transition probabilities included (they have zero derivative), ``[S, A]``."""
    return _autograd(lambda m, th: finite_horizon_return(m, th, horizon), mdp, theta)


def score_weighted_sum(
    pi: np.ndarray, states: np.ndarray, actions: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Per episode ``Σ_t w_t ∇θ log π(a_t|s_t)``, ``[E, S, A]``.

    For the softmax, ``∂ log π(a|s) / ∂θ[s', b] = 1[s'=s] (1[b=a] − π(b|s))``, so the sum is
    ``W[s, a] − (Σ_a' W[s, a']) π(·|s)`` with ``W[e, s, a] = Σ_t w_t 1[s_t=s, a_t=a]``.
    """
    S, A = pi.shape
    E = states.shape[1]
    flat = (np.arange(E) * S * A + states * A + actions).ravel()
    W = np.bincount(flat, weights=weights.ravel(), minlength=E * S * A).reshape(E, S, A)
    return W - W.sum(-1, keepdims=True) * pi


def trajectory_gradient(mdp: TabularMDP, theta: torch.Tensor, horizon: int) -> torch.Tensor:
    """``∇θ J_H = Σ_τ p_θ(τ) G(τ) Σ_{t<H} ∇θ log π_θ(a_t|s_t)`` by enumeration, ``[S, A]`` (eq. 1.7).

    The score of a whole trajectory is the sum of the policy's scores (eq. 1.6): the transition
    probabilities weigh the trajectories but are never differentiated. No autograd.
    """
    states, actions = enumerate_trajectories(mdp, horizon)
    with torch.no_grad():
        probs = trajectory_probabilities(mdp, theta, states, actions).numpy()
        pi = policy(_check_theta(mdp, theta)).numpy()
    weights = np.broadcast_to(probs * trajectory_returns(mdp, states, actions), states.shape)
    # one long "episode" of H·N steps: the score sum is linear in the weights, so Σ_τ comes for free
    one_column = [x.reshape(-1, 1) for x in (states, actions, weights)]
    return torch.from_numpy(score_weighted_sum(pi, *one_column)[0])
