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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float64


@dataclass(frozen=True)
class TabularMDP:
    """A finite discounted MDP.

    Fields: ``P[S, A, S]`` transition probabilities (each ``P[s, a]`` sums to 1), ``R[S, A]`` expected
    reward, ``mu0[S]`` initial state distribution, ``gamma`` in [0, 1). Tensors are float64.
    """

    P: torch.Tensor
    R: torch.Tensor
    mu0: torch.Tensor
    gamma: float
    name: str = "mdp"

    def __post_init__(self):
        for field in ("P", "R", "mu0"):
            object.__setattr__(self, field, torch.as_tensor(getattr(self, field), dtype=DTYPE))
        P, R, mu0 = self.P, self.R, self.mu0
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"P must have shape [S, A, S], got {tuple(P.shape)}")
        S, A = P.shape[:2]
        if R.shape != (S, A):
            raise ValueError(
                f"R must have shape [S, A] = [{S}, {A}] to match P, got {tuple(R.shape)}"
            )
        if mu0.shape != (S,):
            raise ValueError(f"mu0 must have shape [S] = [{S}] to match P, got {tuple(mu0.shape)}")
        if (P < 0).any() or not torch.allclose(P.sum(-1), torch.ones(S, A, dtype=DTYPE), atol=1e-9):
            bad = (P.sum(-1) - 1).abs().argmax().item()
            s, a = divmod(bad, A)
            raise ValueError(
                f"rows of P must be probability distributions (non-negative, summing to 1); "
                f"P[{s}, {a}] sums to {P[s, a].sum().item():.6g}"
            )
        if (mu0 < 0).any() or abs(mu0.sum().item() - 1) > 1e-9:
            raise ValueError(
                f"mu0 must be a probability distribution; it sums to {mu0.sum().item():.6g}"
            )
        if not 0.0 <= float(self.gamma) < 1.0:
            raise ValueError(f"gamma = {self.gamma!r} is invalid: must be in [0, 1)")

    def with_gamma(self, gamma: float) -> TabularMDP:
        """The same MDP with another discount factor."""
        return dataclasses.replace(self, gamma=gamma)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]


def random_mdp(n_states: int, n_actions: int, gamma: float, seed: int = 0) -> TabularMDP:
    """A random MDP: Dirichlet(1) transitions, rewards uniform in [-1, 1], uniform start state."""
    if n_states < 1 or n_actions < 1:
        raise ValueError(f"n_states and n_actions must be >= 1, got {n_states} and {n_actions}")
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    R = rng.uniform(-1.0, 1.0, size=(n_states, n_actions))
    mu0 = np.full(n_states, 1.0 / n_states)
    return TabularMDP(P, R, mu0, gamma, name=f"random({n_states}x{n_actions}, seed={seed})")


def chain_mdp(n_states: int = 5, gamma: float = 0.9, slip: float = 0.1) -> TabularMDP:
    """A corridor a student can picture: states 0..S−1, actions 0 = left, 1 = right.

    The agent starts at state 0. Moving right from the second-to-last state into the last state pays
    +1; the last state is absorbing (it loops to itself with reward 0), so an episode effectively ends
    there. Every other step costs −0.01. With probability ``slip`` the move goes the other way.
    """
    if n_states < 2:
        raise ValueError(f"n_states must be >= 2 for a chain, got {n_states}")
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"slip = {slip!r} is invalid: must be in [0, 1]")
    S, goal = n_states, n_states - 1
    P = np.zeros((S, 2, S))
    R = np.full((S, 2), -0.01)
    for s in range(goal):
        left, right = max(s - 1, 0), s + 1
        P[s, 0, left] += 1 - slip
        P[s, 0, right] += slip
        P[s, 1, right] += 1 - slip
        P[s, 1, left] += slip
        bonus = 1.0 if right == goal else 0.0
        R[s, 1] = (1 - slip) * bonus - 0.01
        R[s, 0] = slip * bonus - 0.01
    P[goal, :, goal] = 1.0
    R[goal] = 0.0
    mu0 = np.zeros(S)
    mu0[0] = 1.0
    return TabularMDP(P, R, mu0, gamma, name=f"chain({S}, slip={slip})")


def bandit(rewards, gamma: float = 0.0) -> TabularMDP:
    """A one-state MDP (a bandit): action ``a`` pays ``rewards[a]`` and the state loops to itself."""
    R = torch.as_tensor(rewards, dtype=DTYPE).reshape(1, -1)
    A = R.shape[1]
    return TabularMDP(torch.ones(1, A, 1), R, torch.ones(1), gamma, name=f"bandit({A} arms)")


# ----------------------------------------------------------------------------- exact quantities


def _check_theta(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    theta = torch.as_tensor(theta)
    if theta.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(
            f"theta must have shape [S, A] = [{mdp.n_states}, {mdp.n_actions}], "
            f"got {tuple(theta.shape)}"
        )
    return theta.to(DTYPE)


def policy(theta: torch.Tensor) -> torch.Tensor:
    """Softmax policy ``π(a|s) = softmax(θ[s])[a]``; ``[S, A] -> [S, A]``."""
    return torch.softmax(torch.as_tensor(theta, dtype=DTYPE), dim=-1)


def policy_matrices(mdp: TabularMDP, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``P_π[S, S]`` and ``r_π[S]`` under the softmax policy (eq. 1.1)."""
    pi = policy(_check_theta(mdp, theta))
    return torch.einsum("sa,sat->st", pi, mdp.P), (pi * mdp.R).sum(-1)


def state_values(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``V^π = (I − γ P_π)⁻¹ r_π``, ``[S]`` (eq. 1.2), by a linear solve."""
    P_pi, r_pi = policy_matrices(mdp, theta)
    eye = torch.eye(mdp.n_states, dtype=DTYPE)
    return torch.linalg.solve(eye - mdp.gamma * P_pi, r_pi)


def action_values(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``Q^π(s, a) = R[s, a] + γ Σ_s' P[s, a, s'] V^π(s')``, ``[S, A]`` (eq. 1.2)."""
    return mdp.R + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, state_values(mdp, theta))


def discounted_visitation(
    mdp: TabularMDP, theta: torch.Tensor, normalized: bool = False
) -> torch.Tensor:
    """``d^π(s) = Σ_t γ^t Pr(s_t = s | μ0, π)``, ``[S]`` (eq. 1.4).

    Unnormalised it sums to ``1/(1−γ)`` and is the weight that appears in the theorem; with
    ``normalized=True`` it is multiplied by ``(1−γ)`` into a probability distribution.
    """
    P_pi, _ = policy_matrices(mdp, theta)
    eye = torch.eye(mdp.n_states, dtype=DTYPE)
    d = torch.linalg.solve((eye - mdp.gamma * P_pi).T, mdp.mu0)
    return d * (1 - mdp.gamma) if normalized else d


def exact_return(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``J(θ) = μ0ᵀ (I − γ P_π)⁻¹ r_π``, a differentiable float64 scalar (eq. 1.3)."""
    return mdp.mu0 @ state_values(mdp, theta)


def stationary_distribution(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``ν[S]`` with ``νᵀ P_π = νᵀ`` and ``Σ_s ν(s) = 1``, differentiable (eq. 1.12).

    Solved as one linear system: the last of the ``S`` equations ``(I − P_π)ᵀ ν = 0`` (which are
    linearly dependent) is replaced by ``Σ_s ν(s) = 1``. Unique when the chain under ``π`` has a
    single recurrent class (true for :func:`random_mdp`, whose transitions are all positive).
    """
    P_pi, _ = policy_matrices(mdp, theta)
    system = (torch.eye(mdp.n_states, dtype=DTYPE) - P_pi).T.clone()
    system[-1] = 1.0
    rhs = torch.zeros(mdp.n_states, dtype=DTYPE)
    rhs[-1] = 1.0
    return torch.linalg.solve(system, rhs)


def average_reward(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``ρ(θ) = Σ_s ν(s) r_π(s)``, the reward per step in the long run, differentiable (eq. 1.12).

    It ignores ``mdp.gamma``: the objective of a continuing task with no discount at all.
    """
    _, r_pi = policy_matrices(mdp, theta)
    return stationary_distribution(mdp, theta) @ r_pi


# ----------------------------------------------------------------------------- exact gradients


def autograd_gradient(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``∇θ J`` by autograd through the closed form of :func:`exact_return`, ``[S, A]``."""
    return _autograd(exact_return, mdp, theta)


def average_reward_gradient(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``∇θ ρ`` by autograd through :func:`average_reward`, ``[S, A]`` (eq. 1.12)."""
    return _autograd(average_reward, mdp, theta)


def _autograd(objective, mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
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


def seed_form_comparison(mdp: TabularMDP, theta: torch.Tensor, horizon: int | None = None) -> dict:
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


def average_reward_view(mdp: TabularMDP, theta: torch.Tensor) -> dict:
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


# ----------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class Episodes:
    """Sampled episodes, time-major: ``states``, ``actions`` int64 and ``rewards`` float64, ``[H, E]``."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    gamma: float

    def discounted_returns(self) -> np.ndarray:
        """``G_0 = Σ_t γ^t r_t`` per episode, ``[E]`` (eq. 1.3 estimated)."""
        return discounts(self.gamma, len(self.rewards)) @ self.rewards

    def rewards_to_go(self) -> np.ndarray:
        """``G_t = Σ_{k≥t} γ^{k−t} r_k``, ``[H, E]`` (reward-to-go, eq. 1.8)."""
        return rewards_to_go(self.rewards, self.gamma)


def rewards_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = r_t + γ G_{t+1}`` backwards from ``G_H = 0``, along axis 0 (``[H]`` or ``[H, E]``)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.empty_like(rewards)
    running = np.zeros(rewards.shape[1:])
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def discounts(gamma: float, horizon: int) -> np.ndarray:
    """``[1, γ, γ², …, γ^{H−1}]``, ``[H]``."""
    return gamma ** np.arange(horizon, dtype=np.float64)


def default_horizon(gamma: float, tol: float = 1e-8) -> int:
    """Smallest ``H`` with ``γ^H <= tol``: cutting episodes there changes returns by at most
    ``tol · max|R| / (1−γ)``, far below the Monte Carlo error of any batch we sample."""
    if gamma == 0:
        return 1
    return max(1, math.ceil(math.log(tol) / math.log(gamma)))


def _sample_categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One sample per row of ``probs[E, K]`` by inverting the CDF, ``[E]``."""
    u = rng.random((probs.shape[0], 1))
    return np.minimum((probs.cumsum(-1) < u).sum(-1), probs.shape[1] - 1)


def sample_episodes(
    mdp: TabularMDP, theta: torch.Tensor, episodes: int, horizon: int | None = None, seed: int = 0
) -> Episodes:
    """Run ``episodes`` episodes of ``horizon`` steps under ``π_θ`` at once; time-major arrays."""
    if episodes < 1:
        raise ValueError(f"episodes = {episodes!r} is invalid: must be >= 1")
    horizon = default_horizon(mdp.gamma) if horizon is None else horizon
    if horizon < 1:
        raise ValueError(f"horizon = {horizon!r} is invalid: must be >= 1")
    rng = np.random.default_rng(seed)
    pi = policy(_check_theta(mdp, theta)).detach().numpy()
    P, R = mdp.P.numpy(), mdp.R.numpy()
    states = np.empty((horizon, episodes), dtype=np.int64)
    actions = np.empty((horizon, episodes), dtype=np.int64)
    s = _sample_categorical(rng, np.broadcast_to(mdp.mu0.numpy(), (episodes, mdp.n_states)))
    for t in range(horizon):
        a = _sample_categorical(rng, pi[s])
        states[t], actions[t] = s, a
        s = _sample_categorical(rng, P[s, a])
    return Episodes(states, actions, R[states, actions], mdp.gamma)


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


def episode_gradients(
    mdp: TabularMDP,
    theta: torch.Tensor,
    eps: Episodes,
    reward_to_go: bool = True,
    gamma_t: bool = True,
    baseline: bool | torch.Tensor = False,
) -> torch.Tensor:
    """One REINFORCE gradient estimate per episode of ``eps``, ``[E, S, A]`` (eq. 1.7–1.9).

    Each estimate is ``Σ_t Ψ_t ∇θ log π(a_t|s_t)`` with

    * ``reward_to_go=False``: ``Ψ_t = G_0`` (the whole discounted return, eq. 1.7);
    * ``reward_to_go=True``: ``Ψ_t = γ^t G_t`` (causality: only later rewards, eq. 1.8);
    * ``gamma_t=False``: ``Ψ_t = G_t`` — the seed's formula, ``E[Σ_t ∇ log π · Q]`` without the
      ``γ^t`` factor. It is what most implementations compute and it is **biased** for ``γ < 1``:
      it converges to :func:`seed_form_gradient`, not ``∇J``. Only meaningful with reward-to-go;
    * ``baseline=True``: subtract ``γ^t V^π(s_t)`` (or ``V^π(s_t)`` without ``γ^t``), the exact value
      of the current policy — unbiased because ``E[∇ log π(a|s)] = 0`` for every ``s`` (eq. 1.9);
    * ``baseline=b``, a tensor ``[S]``: subtract ``γ^t b(s_t)`` instead. Any function of the state
      keeps the estimate unbiased; how close it is to ``V^π`` decides the variance.

    All choices with ``gamma_t=True`` are unbiased estimates of ``∇θ J`` (up to the horizon cut).
    """
    if not gamma_t and not reward_to_go:
        raise ValueError(
            "gamma_t=False needs reward_to_go=True: the full return G_0 already carries γ^t on every "
            "reward, so dropping γ^t only has a meaning for the reward-to-go form"
        )
    H = len(eps.rewards)
    disc = discounts(mdp.gamma, H)[:, None] if gamma_t else np.ones((H, 1))
    if reward_to_go:
        psi = disc * eps.rewards_to_go()
    else:
        psi = np.broadcast_to(eps.discounted_returns(), eps.rewards.shape)
    b = baseline_values(mdp, theta, baseline)
    if b is not None:
        psi = psi - disc * b[eps.states]
    pi = policy(_check_theta(mdp, theta)).detach().numpy()
    return torch.from_numpy(score_weighted_sum(pi, eps.states, eps.actions, psi))


def baseline_values(
    mdp: TabularMDP, theta: torch.Tensor, baseline: bool | torch.Tensor
) -> np.ndarray | None:
    """The ``b[S]`` that :func:`episode_gradients` subtracts: None for ``False``, the exact
    ``V^π`` for ``True``, else ``baseline`` itself (shape ``[S]``)."""
    if isinstance(baseline, bool):
        return state_values(mdp, theta).detach().numpy() if baseline else None
    b = torch.as_tensor(baseline, dtype=DTYPE).detach()
    if b.shape != (mdp.n_states,):
        raise ValueError(f"baseline must be a bool or a tensor [S] = [{mdp.n_states}], got {b!r}")
    return b.numpy()


def reinforce_samples(
    mdp: TabularMDP,
    theta: torch.Tensor,
    episodes: int,
    horizon: int | None = None,
    seed: int = 0,
    **options,
) -> torch.Tensor:
    """Sample ``episodes`` episodes and return one gradient estimate each, ``[E, S, A]``.

    ``options`` (``reward_to_go``, ``gamma_t``, ``baseline``) as in :func:`episode_gradients`.
    """
    return episode_gradients(
        mdp, theta, sample_episodes(mdp, theta, episodes, horizon, seed), **options
    )


def reinforce_gradient(
    mdp: TabularMDP,
    theta: torch.Tensor,
    episodes: int = 1000,
    horizon: int | None = None,
    seed: int = 0,
    **options,
) -> torch.Tensor:
    """Monte Carlo REINFORCE estimate of ``∇θ J``, ``[S, A]``: the mean of :func:`reinforce_samples`.

    The default (reward-to-go with ``γ^t``, horizon long enough that ``γ^H <= 1e-8``) is unbiased.
    """
    return reinforce_samples(mdp, theta, episodes, horizon, seed, **options).mean(0)


def estimator_error_curves(
    mdp: TabularMDP,
    theta: torch.Tensor,
    variants: dict,
    counts,
    repeats: int = 20,
    seed: int = 0,
    horizon: int | None = None,
) -> dict:
    """Root-mean-square error of REINFORCE estimates against ``∇J`` as the batch grows.

    Samples ``repeats`` independent batches of ``max(counts)`` episodes once; every variant (a label
    mapped to options of :func:`episode_gradients`) is computed on the same episodes. For each ``N``
    in ``counts`` the estimate is the mean of the first ``N`` episodes of a batch and the error is
    ``sqrt(mean over batches of |ĝ_N − ∇J|²)``; an unbiased estimator gives ``error ∝ 1/√N``.
    Returns ``{label: {"counts": [K], "rmse": [K], "rmse_se": [K], "variance": tr Cov of one
    episode's estimate, "variance_se": float}}``.

    The ``_se`` entries are standard errors of the two measurements themselves. With ``m_N`` the
    mean of the ``R = repeats`` squared errors and ``se(m_N)`` their standard deviation over
    ``√R``, ``rmse_se = se(m_N) / (2 √m_N)`` (first order in ``se(m_N) / m_N``).
    ``variance = Σ_e |g_e − ḡ|² / (E − 1)`` averages one term per episode, so
    ``variance_se = std_e(|g_e − ḡ|²) / √E``.
    """
    counts = np.asarray(sorted(counts), dtype=np.int64)
    exact = autograd_gradient(mdp, theta).flatten()
    n_max = int(counts[-1])
    eps = sample_episodes(mdp, theta, repeats * n_max, horizon, seed)
    curves = {}
    for label, options in variants.items():
        samples = episode_gradients(mdp, theta, eps, **options).flatten(1)
        batches = samples.reshape(repeats, n_max, -1)
        running = batches.cumsum(1)[:, counts - 1] / torch.from_numpy(counts)[None, :, None]
        sq_err = ((running - exact) ** 2).sum(-1)  # [R, K]
        rmse = sq_err.mean(0).sqrt()
        spread = ((samples - samples.mean(0)) ** 2).sum(-1)  # [E]
        curves[label] = {
            "counts": counts,
            "rmse": rmse.numpy(),
            "rmse_se": (sq_err.std(0) / (2 * rmse * math.sqrt(repeats))).numpy(),
            "variance": float(samples.var(0).sum()),
            "variance_se": float(spread.std() / math.sqrt(len(spread))),
        }
    return curves


def critic_batch(eps: Episodes, critic: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(rewards, values, next_values)``, ``[H−1, E]`` float64 tensors, of the episodes ``eps`` as
    :mod:`rlteach.advantages` takes them, with ``values[t] = critic[s_t]`` and
    ``next_values[t] = critic[s_{t+1}]``: no episode ends, the last recorded state is bootstrapped."""
    critic = torch.as_tensor(critic, dtype=DTYPE)
    return (
        torch.from_numpy(eps.rewards[:-1]),
        critic[torch.from_numpy(eps.states[:-1])],
        critic[torch.from_numpy(eps.states[1:])],
    )


def advantage_estimator_errors(
    mdp: TabularMDP,
    theta: torch.Tensor,
    critic: torch.Tensor,
    estimators: dict,
    episodes: int = 4000,
    seed: int = 0,
) -> dict:
    """Bias² and variance of advantage estimators at the first step, against the exact ``Q^π``.

    With an imperfect critic ``V̂ = critic[S]`` each estimator trades bias (it trusts ``V̂``) for
    variance (it trusts sampled rewards) — notebook 03, eq. 3.3. ``estimators`` maps a label to
    ``("gae", λ)`` or ``("nstep", n)``; each is computed with :mod:`rlteach.advantages` on the same
    sampled episodes (``[H, E]``, cut at the default horizon and bootstrapped from ``V̂`` there).
    The error measured is that of the return target ``R̂ = Â + V̂(s_0)`` against ``Q^π(s_0, a_0)``:
    the baseline ``V̂(s_0)`` that ``Â`` subtracts does not bias the policy gradient, the error in
    ``R̂`` does. Errors are grouped by ``(s_0, a_0)``: ``bias² = Σ p(s,a) mean(err | s,a)²`` (less
    its sampling noise ``var/(n−1)``), ``variance = Σ p(s,a) var(err | s,a)``.
    Returns ``{label: {"bias2": float, "variance": float, "mse": float}}``.
    """
    from rlteach import advantages

    horizon = default_horizon(mdp.gamma) + 1
    eps = sample_episodes(mdp, theta, episodes, horizon, seed)
    critic = torch.as_tensor(critic, dtype=DTYPE)
    rewards, values, next_values = critic_batch(eps, critic)
    no_end = torch.zeros_like(rewards, dtype=torch.bool)
    s0, a0 = eps.states[0], eps.actions[0]
    true_q = action_values(mdp, theta).detach().numpy()
    group = s0 * mdp.n_actions + a0
    counts = np.bincount(group, minlength=mdp.n_states * mdp.n_actions)
    seen = counts > 1
    weights = counts[seen] / counts[seen].sum()
    out = {}
    for label, (kind, param) in estimators.items():
        if kind == "gae":
            adv, _ = advantages.gae(rewards, values, next_values, no_end, no_end, mdp.gamma, param)
        elif kind == "nstep":
            adv, _ = advantages.nstep_advantages(
                rewards, values, next_values, no_end, no_end, mdp.gamma, param
            )
        else:
            raise ValueError(f"estimator kind must be 'gae' or 'nstep', got {kind!r} for {label!r}")
        err = adv[0].numpy() + critic.numpy()[s0] - true_q[s0, a0]
        mean = np.bincount(group, err, minlength=len(counts))[seen] / counts[seen]
        sq = np.bincount(group, err**2, minlength=len(counts))[seen] / counts[seen]
        variance_g = sq - mean**2
        # mean² overestimates the squared bias by var/n: subtract it (unbiased, clipped at 0)
        bias2 = max(0.0, float(weights @ (mean**2 - variance_g / (counts[seen] - 1))))
        variance = float(weights @ variance_g)
        out[label] = {"bias2": bias2, "variance": variance, "mse": bias2 + variance}
    return out


def td_fixed_point(mdp: TabularMDP, eps: Episodes, cut_is_terminal: bool) -> torch.Tensor:
    """The values TD(0) converges to on the sampled transitions of ``eps`` (batch LSTD), ``[S]``.

    Every episode of ``eps`` is treated as cut by a time limit after its last recorded transition:
    step ``t`` goes from ``states[t]`` to ``states[t+1]`` for ``t < H−1`` (so ``eps`` needs one extra
    state at the end). The fixed point solves ``Σ φ(s)(φ(s) − γ c φ(s'))ᵀ V = Σ φ(s) r`` with
    one-hot ``φ`` and ``c = 1``, except ``c = 0`` at the cut when ``cut_is_terminal`` — the bug of
    treating a truncation as a termination (notebook 03, section 3).
    """
    S = mdp.n_states
    s, s_next = eps.states[:-1].ravel(), eps.states[1:].ravel()
    r = eps.rewards[:-1].ravel()
    bootstrap = np.full(eps.states[:-1].shape, mdp.gamma)
    if cut_is_terminal:
        bootstrap[-1] = 0.0
    A = np.zeros((S, S))
    np.add.at(A, (s, s), 1.0)
    np.add.at(A, (s, s_next), -bootstrap.ravel())
    b = np.bincount(s, weights=r, minlength=S)
    return torch.from_numpy(np.linalg.solve(A, b))


# ----------------------------------------------------------------------------- notebook 04: surrogate


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
    mdp: TabularMDP, theta_old: torch.Tensor, direction: torch.Tensor, steps
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


# ----------------------------------------------------------------------------- critic errors, exact

CRITIC_ERRORS = ("noise", "offset", "shrunk", "other policy")


def critic_error_shape(mdp: TabularMDP, theta: torch.Tensor, kind: str, seed: int = 0):
    """The direction ``e[S]`` of a critic's error ``V̂ − V^π``, scaled to root-mean-square 1 over states.

    * ``"noise"``: independent standard normal per state (drawn with ``seed``): a critic that is
      wrong by a different, unrelated amount in every state;
    * ``"offset"``: ``1`` in every state, the critic ``V^π + c``;
    * ``"shrunk"``: ``−V^π``, the critic ``(1 − k) V^π``, pulled towards 0 as one initialised at 0
      and trained part of the way would be;
    * ``"other policy"``: ``V^{π'} − V^π`` for ``π'`` with logits ``θ + 3 Z`` (``Z`` standard normal,
      drawn with ``seed``): a critic fitted to a policy the actor has moved away from.
    """
    V = state_values(mdp, theta).detach()
    rng = np.random.default_rng(seed)
    if kind == "noise":
        e = torch.from_numpy(rng.normal(size=mdp.n_states))
    elif kind == "offset":
        e = torch.ones(mdp.n_states, dtype=DTYPE)
    elif kind == "shrunk":
        e = -V
    elif kind == "other policy":
        other = _check_theta(mdp, theta) + 3.0 * torch.from_numpy(rng.normal(size=theta.shape))
        e = state_values(mdp, other).detach() - V
    else:
        raise ValueError(
            f"kind = {kind!r} is not allowed: must be one of {', '.join(CRITIC_ERRORS)}"
        )
    return e / e.pow(2).mean().sqrt()


def critic_with_error(
    mdp: TabularMDP, theta: torch.Tensor, kind: str, size: float, seed: int = 0
) -> torch.Tensor:
    """``V̂ = V^π + size · e``, ``[S]``, with ``e`` from :func:`critic_error_shape`: ``size`` is the
    root-mean-square error of the critic over states, the same for every ``kind``."""
    return state_values(mdp, theta).detach() + size * critic_error_shape(mdp, theta, kind, seed)


def lambda_return_moments(
    mdp: TabularMDP, theta: torch.Tensor, critic: torch.Tensor, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and second moment of GAE's return target given the first step, ``[S, A]`` each.

    The target ``R̂_t = Â^λ_t + V̂(s_t)`` (notebook 03, eq. 3.2) of an episode without end obeys
    ``R̂_t = c(s_t, a_t, s_{t+1}) + γλ R̂_{t+1}`` with ``c(s, a, s') = R[s, a] + γ(1−λ) V̂(s')``.
    Given ``(s, a, s')`` the future ``R̂_{t+1}`` is independent of the past, so with
    ``u(s) = E[R̂ | s]`` and ``m(s) = E[R̂² | s]``:
    ``u = (I − γλ P_π)⁻¹ Σ_a π Σ_s' P c`` and ``m = (I − γ²λ² P_π)⁻¹ Σ_a π b``, where
    ``b(s, a) = Σ_s' P[s, a, s'] (c² + 2γλ c u(s'))``; then
    ``E[R̂ | s, a] = Σ_s' P (c + γλ u(s'))`` and ``E[R̂² | s, a] = b + γ²λ² Σ_s' P m(s')``.
    """
    return _lambda_return_moments(mdp, policy(_check_theta(mdp, theta)).detach(), critic, lam)


def _lambda_return_moments(mdp, pi, critic, lam):
    """:func:`lambda_return_moments` for the policy table ``pi[S, A]``."""
    P_pi = torch.einsum("sa,sat->st", pi, mdp.P)
    g, critic = mdp.gamma, torch.as_tensor(critic, dtype=DTYPE)
    eye = torch.eye(mdp.n_states, dtype=DTYPE)
    c = mdp.R[:, :, None] + g * (1 - lam) * critic  # [S, A, S']
    u = torch.linalg.solve(eye - g * lam * P_pi, (pi * (mdp.P * c).sum(-1)).sum(-1))
    b = (mdp.P * (c**2 + 2 * g * lam * c * u)).sum(-1)
    m = torch.linalg.solve(eye - (g * lam) ** 2 * P_pi, (pi * b).sum(-1))
    mean = (mdp.P * (c + g * lam * u)).sum(-1)
    return mean, b + (g * lam) ** 2 * mdp.P @ m


def nstep_return_moments(
    mdp: TabularMDP, theta: torch.Tensor, critic: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and second moment of the n-step target ``G^(n)_t = Â^(n)_t + V̂(s_t)`` given
    ``(s_t, a_t)``, ``[S, A]`` each, by the recursion ``G^(k) = R[s, a] + γ G^(k−1)(s')`` from
    ``G^(0)(s) = V̂(s)`` (``R`` is deterministic given ``(s, a)``, only ``s'`` and later actions are
    random)."""
    return _nstep_return_moments(mdp, policy(_check_theta(mdp, theta)).detach(), critic, n)


def _nstep_return_moments(mdp, pi, critic, n):
    """:func:`nstep_return_moments` for the policy table ``pi[S, A]``."""
    g = mdp.gamma
    mean_s = torch.as_tensor(critic, dtype=DTYPE)
    second_s = mean_s**2
    for _ in range(n):
        next_mean, next_second = mdp.P @ mean_s, mdp.P @ second_s  # [S, A]
        mean = mdp.R + g * next_mean
        second = mdp.R**2 + 2 * g * mdp.R * next_mean + g**2 * next_second
        mean_s, second_s = (pi * mean).sum(-1), (pi * second).sum(-1)
    return mean, second


def exact_estimator_errors(
    mdp: TabularMDP, theta: torch.Tensor, critic: torch.Tensor, estimators: dict
) -> dict:
    """Exact bias², variance and mean squared error of advantage estimators (notebook 03, eq. 3.3).

    What :func:`advantage_estimator_errors` samples, computed in closed form: the error of the
    return target ``R̂`` against ``Q^π(s_0, a_0)`` given the first step, with ``s_0 ~ μ0`` and
    ``a_0 ~ π``: ``bias² = Σ p(s,a) (E[R̂|s,a] − Q^π(s,a))²`` and
    ``variance = Σ p(s,a) Var[R̂|s,a]``, ``p(s,a) = μ0(s) π(a|s)``. ``estimators`` maps a label to
    ``("gae", λ)`` (:func:`lambda_return_moments`) or ``("nstep", n)``
    (:func:`nstep_return_moments`). Returns ``{label: {"bias2", "variance", "mse"}}`` (floats).
    """
    moments = {"gae": _lambda_return_moments, "nstep": _nstep_return_moments}
    pi = policy(_check_theta(mdp, theta)).detach()
    weights = mdp.mu0[:, None] * pi
    true_q = action_values(mdp, theta).detach()
    out = {}
    for label, (kind, param) in estimators.items():
        if kind not in moments:
            raise ValueError(f"estimator kind must be 'gae' or 'nstep', got {kind!r} for {label!r}")
        mean, second = moments[kind](mdp, pi, critic, param)
        bias2 = float((weights * (mean - true_q) ** 2).sum())
        variance = float((weights * (second - mean**2).clamp(min=0)).sum())
        out[label] = {"bias2": bias2, "variance": variance, "mse": bias2 + variance}
    return out


def critic_error_summary(
    mdp: TabularMDP, theta: torch.Tensor, size: float, lambdas, seed: int = 0
) -> list[tuple]:
    """Where GAE(λ) is best, for the exact critic and each kind of :data:`CRITIC_ERRORS` at
    root-mean-square ``size`` (exact errors, :func:`exact_estimator_errors`, over ``lambdas``).

    One row per critic: ``(kind, λ of least bias², λ of least variance, λ of least MSE, largest
    bias² over λ, variance at lambdas[0], that variance ÷ the exact critic's, variance at
    lambdas[-1], MSE at lambdas[0], least MSE)``. When no bias² exceeds 1e-12 of the largest error
    (the exact critic), the λ of least bias² is ``"every λ"``.
    """
    lambdas = list(lambdas)
    rows = []
    critics = {"exact": state_values(mdp, theta).detach()}
    critics |= {kind: critic_with_error(mdp, theta, kind, size, seed) for kind in CRITIC_ERRORS}
    exact_variance = _gae_error_columns(mdp, theta, critics["exact"], lambdas)["variance"][0]
    for kind, critic in critics.items():
        column = _gae_error_columns(mdp, theta, critic, lambdas)
        least = [lambdas[int(np.argmin(column[key]))] for key in ("bias2", "variance", "mse")]
        if column["bias2"].max() <= 1e-12 * column["mse"].max():
            least[0] = "every λ"
        variance, mse = column["variance"], column["mse"]
        rows.append(
            (
                kind,
                *least,
                column["bias2"].max(),
                variance[0],
                variance[0] / exact_variance,
                variance[-1],
                mse[0],
                mse.min(),
            )
        )
    return rows


def _gae_error_columns(mdp, theta, critic, lambdas) -> dict:
    """``{"bias2", "variance", "mse"}``: exact errors of GAE(λ) over ``lambdas``, arrays ``[L]``."""
    stats = exact_estimator_errors(mdp, theta, critic, {lam: ("gae", lam) for lam in lambdas})
    return {key: np.array([stats[lam][key] for lam in lambdas]) for key in stats[lambdas[0]]}


def critic_error_draws(
    mdp: TabularMDP, theta: torch.Tensor, size: float, lambdas, kinds, seeds
) -> list[tuple]:
    """How much the reading of a random kind of critic error depends on its draw: for each kind
    in ``kinds`` (``"noise"``, ``"other policy"``) and each seed in ``seeds``, the critic
    :func:`critic_with_error` draws, its GAE(λ) variance over ``lambdas`` (exact).

    One row per kind: ``(kind, λ of least variance of each draw (text), number of draws with the
    least variance at lambdas[0], smallest and largest ratio of the variance at lambdas[0] to the
    exact critic's)``.
    """
    lambdas = list(lambdas)
    exact = _gae_error_columns(mdp, theta, state_values(mdp, theta).detach(), lambdas)
    rows = []
    for kind in kinds:
        least, ratios = [], []
        for seed in seeds:
            critic = critic_with_error(mdp, theta, kind, size, seed)
            variance = _gae_error_columns(mdp, theta, critic, lambdas)["variance"]
            least.append(lambdas[int(np.argmin(variance))])
            ratios.append(variance[0] / exact["variance"][0])
        at_first = sum(lam == lambdas[0] for lam in least)
        rows.append(
            (kind, ", ".join(f"{lam:g}" for lam in least), at_first, min(ratios), max(ratios))
        )
    return rows
