"""Finite MDPs and the exact quantities of a softmax policy on them (notebooks 01–04).

Equation family 1.1–1.4 and 1.12 of notebook 01: the policy's transition matrix and reward
``P_π, r_π`` (eq. 1.1), the values ``V^π, Q^π`` (eq. 1.2), the return ``J(θ)`` (eq. 1.3), the
discounted visitation ``d^π`` (eq. 1.4), and the stationary distribution and average reward of a
continuing task (eq. 1.12); plus the discounts ``γ^t`` and the horizon at which episodes are cut.
Every other module of :mod:`rlteach.tabular` builds on these; notebooks 02–04 use the MDPs and
values of this module too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
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

    def __post_init__(self) -> None:
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
            bad = int((P.sum(-1) - 1).abs().argmax())
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
    return TabularMDP(
        torch.from_numpy(P),
        torch.from_numpy(R),
        torch.from_numpy(mu0),
        gamma,
        name=f"random({n_states}x{n_actions}, seed={seed})",
    )


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
    return TabularMDP(
        torch.from_numpy(P),
        torch.from_numpy(R),
        torch.from_numpy(mu0),
        gamma,
        name=f"chain({S}, slip={slip})",
    )


def bandit(rewards: Sequence[float] | np.ndarray | torch.Tensor, gamma: float = 0.0) -> TabularMDP:
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


# ----------------------------------------------------------------------------- discounting


def discounts(gamma: float, horizon: int) -> np.ndarray:
    """``[1, γ, γ², …, γ^{H−1}]``, ``[H]``."""
    return gamma ** np.arange(horizon, dtype=np.float64)


def default_horizon(gamma: float, tol: float = 1e-8) -> int:
    """Smallest ``H`` with ``γ^H <= tol``: cutting episodes there changes returns by at most
    ``tol · max|R| / (1−γ)``, far below the Monte Carlo error of any batch we sample."""
    if gamma == 0:
        return 1
    return max(1, math.ceil(math.log(tol) / math.log(gamma)))
