"""Learning the values of one policy from the actions of another, exactly where it can be (notebook
09): what V-trace (:func:`rlteach.advantages.vtrace`) converges to.

Espeholt et al. (2018, Theorem 1) show that V-trace's evaluation, with data from a behaviour policy
``μ``, converges to the value of

    π_ρ̄(a|s) = min(ρ̄ μ(a|s), π(a|s)) / Σ_b min(ρ̄ μ(b|s), π(b|s))                    (eq. 9.4)

which is the target ``π`` itself when ``ρ̄ = ∞`` (or ``ρ̄ ≥ max π/μ``), and a policy between ``μ``
and ``π`` for smaller ``ρ̄``; ``c̄ ≤ ρ̄`` changes how fast, not where. :func:`vtrace_evaluation` runs
that evaluation on sampled episodes with the library's ``vtrace``; :func:`vtrace_policy` gives
``π_ρ̄``, whose exact values :func:`rlteach.tabular.state_values` computes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlteach import advantages
from rlteach.tabular.mdp import TabularMDP, policy
from rlteach.tabular.reinforce import sample_episodes


def vtrace_policy(target: torch.Tensor, behaviour: torch.Tensor, rho_bar: float) -> torch.Tensor:
    """The logits ``[S, A]`` of ``π_ρ̄`` (eq. 9.4) for the softmax policies of ``target`` (π) and
    ``behaviour`` (μ), logits ``[S, A]``; ``rho_bar = math.inf`` gives π's own probabilities."""
    pi, mu = policy(target), policy(behaviour)
    mixed = torch.minimum(rho_bar * mu, pi) if math.isfinite(rho_bar) else pi
    return torch.log(mixed / mixed.sum(-1, keepdim=True))


def vtrace_evaluation(
    mdp: TabularMDP,
    target: torch.Tensor,
    behaviour: torch.Tensor,
    rho_bar: float,
    c_bar: float = 1.0,
    episodes: int = 10_000,
    horizon: int = 10,
    iterations: int = 300,
    seed: int = 0,
) -> torch.Tensor:
    """V-trace policy evaluation of ``target`` (π, logits ``[S, A]``) from ``episodes`` episodes
    of ``horizon`` steps that ``behaviour`` (μ) acts in, from ``mdp.mu0``. Starting from
    ``V = 0``, each iteration sets every state's value to the mean of its V-trace targets
    ``v_s`` (:func:`rlteach.advantages.vtrace`, each episode's last step bootstrapping from ``V``
    of the state it leads to) over the state's visits, until ``V`` stops changing (no entry by
    more than 1e-9; ``RuntimeError`` if that takes more than ``iterations``). Returns ``V [S]``
    float64 (0 for a state never visited)."""
    sampled = sample_episodes(mdp, behaviour, episodes, horizon + 1, seed)
    states = torch.from_numpy(sampled.states)  # [H + 1, E]: the last row is each step's s_{t+1}
    actions = torch.from_numpy(sampled.actions[:horizon])
    rewards = torch.from_numpy(sampled.rewards[:horizon])
    visited, following = states[:horizon], states[1:]
    log_pi = torch.log_softmax(target, -1)[visited, actions]
    log_mu = torch.log_softmax(behaviour, -1)[visited, actions]
    never = torch.zeros_like(rewards, dtype=torch.bool)  # no episode ends inside the segment
    visits = torch.bincount(visited.flatten(), minlength=mdp.n_states).to(rewards.dtype)
    values = torch.zeros(mdp.n_states, dtype=rewards.dtype)
    for _ in range(iterations):
        vs, _ = advantages.vtrace(
            log_mu,
            log_pi,
            rewards,
            values[visited],
            values[following],
            never,
            never,
            mdp.gamma,
            rho_bar=rho_bar,
            c_bar=c_bar,
        )
        sums = torch.zeros_like(values).index_add_(0, visited.flatten(), vs.flatten())
        updated = torch.where(visits > 0, sums / visits.clamp(min=1), values)
        change = float((updated - values).abs().max())
        if change <= 1e-9:
            return updated
        values = updated
    raise RuntimeError(
        f"V-trace evaluation did not converge in {iterations} iterations (the last one changed "
        f"V by {change:.2g}): pass more iterations"
    )


def ratio_range(target: torch.Tensor, behaviour: torch.Tensor) -> tuple[float, float]:
    """The smallest and largest importance ratio ``π(a|s) / μ(a|s)`` over every state and action."""
    ratio = (policy(target) / policy(behaviour)).numpy()
    return float(np.min(ratio)), float(np.max(ratio))
