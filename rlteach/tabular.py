"""Finite MDPs where every quantity of the policy gradient theorem can be computed exactly.

Notebook 01 uses this module to check the theorem with numbers. A policy is a table of softmax
logits ``theta[S, A]``: ``π(a|s) = exp θ[s,a] / Σ_b exp θ[s,b]``. All exact quantities are computed in
float64 with linear algebra, differentiably, so autograd gives the true gradient of ``J(θ)``:

* ``P_π[s, s'] = Σ_a π(a|s) P[s, a, s']`` and ``r_π[s] = Σ_a π(a|s) R[s, a]``      (eq. 1.1)
* ``V^π = (I − γ P_π)⁻¹ r_π``,  ``Q^π(s, a) = R[s, a] + γ Σ_s' P[s, a, s'] V^π(s')``  (eq. 1.2)
* ``J(θ) = μ0ᵀ V^π``                                                             (eq. 1.3)
* ``d^π(s) = Σ_t γ^t Pr(s_t = s) = [μ0ᵀ (I − γ P_π)⁻¹](s)`` (sums to 1/(1−γ))       (eq. 1.4)
* theorem: ``∇θ J = Σ_s d^π(s) Σ_a ∇θ π(a|s) Q^π(s, a)``                           (eq. 1.5)
* the seed's form drops ``γ^t``: it weighs states by undiscounted visits ``η_H``            (eq. 1.9)

Monte Carlo estimators (REINFORCE, eq. 1.6–1.8) sample thousands of episodes at once, vectorised over
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


# ----------------------------------------------------------------------------- exact gradients


def autograd_gradient(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """``∇θ J`` by autograd through the closed form of :func:`exact_return`, ``[S, A]``."""
    theta = _check_theta(mdp, theta).detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(exact_return(mdp, theta), theta)
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

    The same sum as the theorem with the undiscounted visits ``η_H`` in place of ``d^π`` (eq. 1.9).
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
        """``G_t = Σ_{k≥t} γ^{k−t} r_k``, ``[H, E]`` (reward-to-go, eq. 1.7)."""
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
    baseline: bool = False,
) -> torch.Tensor:
    """One REINFORCE gradient estimate per episode of ``eps``, ``[E, S, A]`` (eq. 1.6–1.8).

    Each estimate is ``Σ_t Ψ_t ∇θ log π(a_t|s_t)`` with

    * ``reward_to_go=False``: ``Ψ_t = G_0`` (the whole discounted return, eq. 1.6);
    * ``reward_to_go=True``: ``Ψ_t = γ^t G_t`` (causality: only later rewards, eq. 1.7);
    * ``gamma_t=False``: ``Ψ_t = G_t`` — the seed's formula, ``E[Σ_t ∇ log π · Q]`` without the
      ``γ^t`` factor. It is what most implementations compute and it is **biased** for ``γ < 1``:
      it converges to :func:`seed_form_gradient`, not ``∇J``. Only meaningful with reward-to-go;
    * ``baseline=True``: subtract ``γ^t V^π(s_t)`` (or ``V^π(s_t)`` without ``γ^t``), the exact value
      of the current policy — unbiased because ``E[∇ log π(a|s)] = 0`` for every ``s`` (eq. 1.8).

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
    if baseline:
        V = state_values(mdp, theta).detach().numpy()
        psi = psi - disc * V[eps.states]
    pi = policy(_check_theta(mdp, theta)).detach().numpy()
    return torch.from_numpy(score_weighted_sum(pi, eps.states, eps.actions, psi))


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
    Returns ``{label: {"counts": [K], "rmse": [K], "variance": tr Cov of one episode's estimate}}``.
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
        sq_err = ((running - exact) ** 2).sum(-1)
        curves[label] = {
            "counts": counts,
            "rmse": sq_err.mean(0).sqrt().numpy(),
            "variance": float(samples.var(0).sum()),
        }
    return curves


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
    values = critic[torch.from_numpy(eps.states[:-1])]
    next_values = critic[torch.from_numpy(eps.states[1:])]
    rewards = torch.from_numpy(eps.rewards[:-1])
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
