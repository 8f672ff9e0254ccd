"""Monte Carlo REINFORCE on a tabular MDP: sampled episodes and gradient estimates (notebooks 01–02).

Equation family 1.7–1.9 of notebook 01: episodes sampled thousands at once (time-major numpy
arrays), rewards-to-go, one REINFORCE estimate per episode with the whole return (eq. 1.7), with
the reward-to-go (eq. 1.8), with a baseline (eq. 1.9) or without ``γ^t`` (the seed's form,
eq. 1.10), and how fast their error against the exact ``∇J`` falls with the batch size. Notebook 02
samples its episodes here; notebook 03 feeds them to critics (:mod:`rlteach.tabular.critics`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlteach.tabular.gradients import autograd_gradient, score_weighted_sum
from rlteach.tabular.mdp import (
    DTYPE,
    TabularMDP,
    _check_theta,
    default_horizon,
    discounts,
    policy,
    state_values,
)


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
      it converges to :func:`~rlteach.tabular.seed_form_gradient`, not ``∇J``. Only meaningful
      with reward-to-go;
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
    **options: Any,
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
    **options: Any,
) -> torch.Tensor:
    """Monte Carlo REINFORCE estimate of ``∇θ J``, ``[S, A]``: the mean of :func:`reinforce_samples`.

    The default (reward-to-go with ``γ^t``, horizon long enough that ``γ^H <= 1e-8``) is unbiased.
    """
    return reinforce_samples(mdp, theta, episodes, horizon, seed, **options).mean(0)


def estimator_error_curves(
    mdp: TabularMDP,
    theta: torch.Tensor,
    variants: dict,
    counts: Iterable[int],
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
